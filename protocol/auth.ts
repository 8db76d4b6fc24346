/**
 * Mutual HMAC challenge-response over a shared secret, done in one round trip after hello:
 *
 *   worker → hello { nonce: Nw }
 *   coordinator → challenge { nonce: Nc, proof: HMAC(secret, "coordinator" ‖ Nw ‖ Nc) }
 *   worker → auth { proof: HMAC(secret, "worker" ‖ Nc ‖ Nw ‖ workerId) }
 *
 * Each side proves it holds the secret against a nonce the other just chose, so a recorded
 * exchange cannot be replayed; the role label keeps one side's proof from being reflected back as
 * the other's. The secret itself never crosses the wire and is never logged.
 */
import { createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';

export const NONCE_BYTES = 32;
export const PROOF_BYTES = 32;

/** A secret read from a flag, an environment variable or a file; its only uses are the proofs below. */
export class SharedSecret {
  readonly #key: Buffer;

  constructor(secret: string | Uint8Array) {
    this.#key = Buffer.from(secret);
    if (this.#key.length < 16)
      throw new Error('the shared secret must be at least 16 bytes (e.g. `openssl rand -hex 32`)');
  }

  coordinatorProof(workerNonce: Uint8Array, coordinatorNonce: Uint8Array): Uint8Array {
    return this.#mac('coordinator', workerNonce, coordinatorNonce);
  }

  workerProof(coordinatorNonce: Uint8Array, workerNonce: Uint8Array, workerId: string): Uint8Array {
    return this.#mac('worker', coordinatorNonce, workerNonce, Buffer.from(workerId, 'utf8'));
  }

  /**
   * A join pass's proof (protocol/join-pass.ts): that its holder has the secret, for `workerId`, at `at` (ms
   * since the epoch), once (`nonce`). The 'join' label keeps it from serving as a handshake proof.
   */
  joinProof(workerId: string, at: number, nonce: Uint8Array): Uint8Array {
    const time = Buffer.alloc(8);
    time.writeBigUInt64LE(BigInt(at));
    return this.#mac('join', Buffer.from(workerId, 'utf8'), time, nonce);
  }

  /**
   * A 32-byte key for one purpose (protocol/sealing.ts): HKDF-SHA256 over the secret. Distinct
   * `info` labels give independent keys, so one purpose's key says nothing about another's.
   */
  deriveKey(salt: Uint8Array, info: Uint8Array): Buffer {
    return Buffer.from(hkdfSync('sha256', this.#key, salt, info, 32));
  }

  /** Never let a secret reach a log line or an error message by accident. */
  toString(): string {
    return '[secret]';
  }

  toJSON(): string {
    return '[secret]';
  }

  #mac(role: string, ...parts: Uint8Array[]): Uint8Array {
    const h = createHmac('sha256', this.#key).update(role, 'utf8');
    // Length-prefix each part so that no two different part lists hash the same bytes.
    for (const part of parts) h.update(Buffer.from(Uint32Array.of(part.length).buffer)).update(part);
    return new Uint8Array(h.digest());
  }
}

export function newNonce(): Uint8Array {
  return new Uint8Array(randomBytes(NONCE_BYTES));
}

/** Constant-time comparison, so timing does not reveal how much of a forged proof was right. */
export function proofsMatch(expected: Uint8Array, given: Uint8Array): boolean {
  return expected.length === given.length && timingSafeEqual(expected, given);
}
