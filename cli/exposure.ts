/**
 * Whether a coordinator is reachable beyond this machine, and what that demands: beyond loopback
 * without a secret anyone who can reach it may join and feed it gradients, so it refuses unless the
 * operator says --insecure; without TLS it warns (frames are sealed, but who connects is visible).
 */
import type { Logger } from '../common/logger.js';
import { UsageError } from '../common/errors.js';

export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '');
  return h === 'localhost' || h === '::1' || /^127\.\d+\.\d+\.\d+$/.test(h);
}

/** The host of a URL (nats://user@host:4222), or the string itself when it is not one. */
const hostOf = (url: string) => {
  try {
    return new URL(url).hostname;
  } catch {
    return url;
  }
};

export interface Exposure {
  transport: 'ws' | 'nats';
  host: string;
  natsServers: string[];
  secret: boolean;
  tls: boolean;
  insecure: boolean;
}

export function checkExposure(e: Exposure, log: Logger): void {
  const where = e.transport === 'ws' ? [e.host] : e.natsServers.map(hostOf);
  const beyond = where.filter((h) => !isLoopback(h));
  if (beyond.length === 0) return;
  const place = e.transport === 'ws' ? `--host ${e.host}` : `NATS at ${beyond.join(', ')}`;
  if (!e.secret && !e.insecure) {
    throw new UsageError(
      `${place} is reachable beyond this machine and no secret is set: anyone could join and send gradients. ` +
        'Set one (--secret-file FILE or GRADFLEET_SECRET; `openssl rand -hex 32`), or pass --insecure to accept that',
    );
  }
  if (!e.secret) log.warn(`--insecure: ${place} accepts any worker, and frames travel unsealed`);
  if (!e.tls)
    log.warn(
      `${place} without TLS: frames are sealed, but who connects, when and how much is visible on the network`,
    );
}
