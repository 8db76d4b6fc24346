/**
 * NATS as operators secure it: TLS with a private CA, users with passwords, NKeys. A real
 * nats-server is configured so; training works with the right credentials and fails clearly,
 * without retrying, with wrong ones.
 */
import { writeFileSync } from 'node:fs';
import { nkeys } from 'nats';
import { beforeAll, describe, expect, it } from 'vitest';
import { type TestCertificates, makeCertificates } from '../helpers/certificates.js';
import { expectOk, run, smallMnist, start, tempDir } from '../helpers/gradfleet.js';
import { type NatsServer, startNats } from '../helpers/nats.js';

const dir = tempDir();
const data = smallMnist(dir, 200, 100);
const config = [
  '--model',
  'mnist-small',
  '--batch-size',
  '64',
  '--micro-batch',
  '16',
  '--seed',
  '4',
  '--max-steps',
  '6',
  '--epochs',
  '2',
  '--train',
  data.train,
  '--test',
  data.test,
  '--json',
];
const PASSWORD = 'nats-password-1f9e';
const user = nkeys.createUser();
const seedFile = `${dir}/worker.nk`;
writeFileSync(seedFile, new TextDecoder().decode(user.getSeed()));

let tls: TestCertificates;
let server: NatsServer;
beforeAll(async () => {
  tls = makeCertificates(dir);
  server = await startNats(
    'secured',
    [],
    {},
    {
      dir,
      text: `tls { cert_file: "${tls.cert}", key_file: "${tls.key}" }
authorization { users = [ { user: gradfleet, password: "${PASSWORD}" }, { nkey: ${user.getPublicKey()} } ] }
`,
    },
  );
}, 60_000);

const nats = (subject: string) => [
  '--transport',
  'nats',
  '--nats-url',
  `tls://127.0.0.1:${server.port}`,
  '--nats-subject',
  subject,
  '--nats-tls-ca',
  tls.ca,
];
const asUser = { GRADFLEET_NATS_PASS: PASSWORD };

describe('NATS with TLS and credentials', () => {
  it('a coordinator with user/password and a worker with an NKey train over TLS to the same weights as over WebSockets', async () => {
    const c = start(
      [
        'coordinator',
        ...config,
        ...nats('secure'),
        '--nats-user',
        'gradfleet',
        '--no-metrics',
        '--out',
        `${dir}/secure`,
      ],
      asUser,
    );
    await c.waitFor(/coordinator listening on/);
    const w = start([
      'worker',
      ...nats('secure'),
      '--nats-nkey',
      seedFile,
      '--backend',
      'wasm',
      '--id',
      'nk',
    ]);
    const summary = expectOk(await c.done);
    expect((await w.done).status).toBe(0);
    const ws = expectOk(
      await run(['train', ...config, '--workers', '1', '--backend', 'wasm', '--out', `${dir}/ws`]),
    );
    expect(summary.transport).toBe('nats');
    expect(summary.weights_sha256).toBe(ws.weights_sha256);
  }, 120_000);

  it('a wrong password is refused at once with a clear message, and never printed', async () => {
    const r = await run(
      [
        'worker',
        ...nats('secure'),
        '--nats-user',
        'gradfleet',
        '--backend',
        'wasm',
        '--id',
        'bad',
        '--connect-timeout',
        '30',
      ],
      { GRADFLEET_NATS_PASS: 'wrong-password-xyz' },
    );
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/refused the credentials/);
    expect(r.stderr).not.toMatch(/retrying/);
    expect(r.stderr).not.toContain('wrong-password-xyz');
  }, 60_000);

  it('without the CA the server certificate is not trusted, and the error says so', async () => {
    const args = nats('secure').filter(
      (a, i, all) => a !== '--nats-tls-ca' && all[i - 1] !== '--nats-tls-ca',
    );
    const r = await run(
      [
        'worker',
        ...args,
        '--nats-user',
        'gradfleet',
        '--backend',
        'wasm',
        '--id',
        'untrusting',
        '--connect-timeout',
        '30',
      ],
      asUser,
    );
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/TLS certificate is not trusted \(pass --nats-tls-ca/);
    expect(r.stderr).not.toMatch(/retrying/);
  }, 60_000);
});
