/** A throwaway CA and a certificate for 127.0.0.1 signed by it, made with the real openssl. */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { requireBinary } from './binaries.js';

export interface TestCertificates {
  ca: string;
  cert: string;
  key: string;
}

export function makeCertificates(dir: string): TestCertificates {
  const openssl = requireBinary('openssl');
  const f = (name: string) => join(dir, name);
  const sh = (...args: string[]) => execFileSync(openssl, args, { stdio: 'pipe' });
  sh(
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-days',
    '1',
    '-subj',
    '/CN=gradfleet test CA',
    '-keyout',
    f('ca.key'),
    '-out',
    f('ca.pem'),
  );
  sh(
    'req',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-subj',
    '/CN=127.0.0.1',
    '-keyout',
    f('server.key'),
    '-out',
    f('server.csr'),
  );
  writeFileSync(f('san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  sh(
    'x509',
    '-req',
    '-in',
    f('server.csr'),
    '-CA',
    f('ca.pem'),
    '-CAkey',
    f('ca.key'),
    '-CAcreateserial',
    '-days',
    '1',
    '-extfile',
    f('san.ext'),
    '-out',
    f('server.pem'),
  );
  return { ca: f('ca.pem'), cert: f('server.pem'), key: f('server.key') };
}
