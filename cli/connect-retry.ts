/**
 * Joining a peer that may not be up yet (a coordinator starting, a NATS server restarting): retry with
 * backoff.
 */
import type { Logger } from '../common/logger.js';
import { type Link, isPermanentFailure } from '../protocol/transport.js';

/**
 * Backoff between attempts: doubling from 100 ms to 5 s, with jitter so restarted fleets do not reconnect in
 * lockstep.
 */
export const backoff = (attempt: number) => Math.min(5000, 100 * 2 ** attempt) * (0.5 + Math.random() / 2);

/**
 * Connects, retrying with backoff for up to `timeoutS`; errors that waiting cannot fix end it at
 * once, and so does a stop (Ctrl-C, SIGTERM), with undefined.
 */
export async function connectWithRetry(
  target: { where: string; connect: () => Promise<Link> },
  timeoutS: number,
  log: Logger,
  stopping: () => boolean,
): Promise<Link | undefined> {
  const deadline = Date.now() + timeoutS * 1000;
  for (let attempt = 0; !stopping(); attempt++) {
    try {
      return await target.connect();
    } catch (err) {
      const delay = backoff(attempt);
      if (Date.now() + delay > deadline || isPermanentFailure(err)) throw err;
      log.info(
        { coordinator: target.where, retry_in_ms: Math.round(delay) },
        `${(err as Error).message}; retrying`,
      );
      await new Promise((r) => setTimeout(r, delay));
    }
  }
  return undefined;
}
