/**
 * A join pass: proof of the shared secret that comes with a connection request, before any frame (ws: the
 * upgrade request's X-Gradfleet-Join-Pass header; NATS: the join request). With it the side that is joined
 * tells a peer holding the secret from a flood at once, and lets it past the join-rate limits (never past
 * --max-connections): honest workers behind the same address as a flood (NAT) still join and rejoin.
 *
 *   v1.<workerId, base64url>.<at: ms since the epoch>.<nonce: 16 bytes, base64url>.<proof: 32 bytes, base64url>
 *   proof = HMAC-SHA256(secret, "join" ‖ workerId ‖ at ‖ nonce)   (SharedSecret.joinProof)
 *
 * A pass is good once, and only near the receiver's clock (AdmissionControl.takePass): a recorded one
 * cannot be used again. It admits nothing by itself: the peer still proves the secret in the handshake,
 * and its hello must name the pass's worker.
 */
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { PROOF_BYTES, type SharedSecret, proofsMatch } from './auth.js';

/** The header a ws connection carries its pass in (lowercase, as Node presents request headers). */
export const JOIN_PASS_HEADER = 'x-gradfleet-join-pass';
/** Longer than any pass (a 128-character id, base64url, and the rest): anything longer is not one. */
const MAX_PASS_CHARS = 512;
const NONCE_BYTES = 16;
const VERSION = 'v1';

const base64url = z.string().regex(/^[A-Za-z0-9_-]+$/);
const bytesOf = (length: number) =>
  base64url.transform((text, ctx) => {
    const bytes = new Uint8Array(Buffer.from(text, 'base64url'));
    if (bytes.length !== length) ctx.addIssue({ code: 'custom', message: `expected ${length} bytes` });
    return bytes;
  });
const passSchema = z.object({
  version: z.literal(VERSION),
  workerId: base64url
    .transform((text) => Buffer.from(text, 'base64url').toString('utf8'))
    .pipe(z.string().min(1).max(128)),
  at: z
    .string()
    .regex(/^\d{1,16}$/)
    .transform(Number)
    .pipe(z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER)),
  nonce: bytesOf(NONCE_BYTES),
  proof: bytesOf(PROOF_BYTES),
});

/** A pass as presented: well formed, not yet checked against the secret or the clock. */
export type JoinPass = z.infer<typeof passSchema>;

/** A fresh pass for one connection of `workerId`'s. */
export function mintJoinPass(secret: SharedSecret, workerId: string, now = Date.now()): string {
  const nonce = new Uint8Array(randomBytes(NONCE_BYTES));
  const proof = secret.joinProof(workerId, now, nonce);
  return [
    VERSION,
    Buffer.from(workerId, 'utf8').toString('base64url'),
    String(now),
    Buffer.from(nonce).toString('base64url'),
    Buffer.from(proof).toString('base64url'),
  ].join('.');
}

/** The pass in `text`, or undefined when it is none (wrong form, wrong sizes, too long). */
export function parseJoinPass(text: string): JoinPass | undefined {
  if (text.length > MAX_PASS_CHARS) return undefined;
  const [version, workerId, at, nonce, proof, ...rest] = text.split('.');
  if (rest.length > 0) return undefined;
  const parsed = passSchema.safeParse({ version, workerId, at, nonce, proof });
  return parsed.success ? parsed.data : undefined;
}

/** Whether the pass was made with `secret` (constant time); its freshness is the admission's to judge. */
export function passHoldsSecret(secret: SharedSecret, pass: JoinPass): boolean {
  return proofsMatch(secret.joinProof(pass.workerId, pass.at, pass.nonce), pass.proof);
}
