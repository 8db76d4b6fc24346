/**
 * Sealed frames: after the handshake (auth.ts) every byte between a coordinator and a worker is
 * AES-256-GCM under keys only the two of them can derive, so a party without the secret can neither
 * read a frame nor forge, move, replay or reorder one.
 *
 *   session id   = SHA-256("gradfleet session" ‖ Nw ‖ Nc ‖ workerId), both nonces fresh per handshake
 *   key(dir)     = HKDF-SHA256(secret, salt = session id, info = "gradfleet seal v1 " ‖ dir)
 *   sealed       = "GFSL" ‖ u64 BE counter ‖ ciphertext ‖ 16-byte tag
 *   nonce        = 4 zero bytes ‖ u64 BE counter        (the sender's counter only grows: never reused)
 *   AD           = "GFSL" ‖ counter ‖ context           (context = session id ‖ direction)
 *
 * A frame moved to another session or direction fails its tag (other key, other AD): `bad_seal`.
 * A genuine frame out of its place (a replay, a reorder) fails the counter check: `replayed`.
 * Broadcasts (the weights, once for every worker over NATS) are sealed under a per-publisher run
 * key, HKDF(secret, salt = publisher id, info = "gradfleet broadcast v1"), with the broadcast's
 * sequence number (one per step's weights) as the counter: AD and nonce name that step.
 */
import { createCipheriv, createDecipheriv, createHash } from 'node:crypto';
import type { SharedSecret } from './auth.js';

const SEAL_MAGIC = Uint8Array.of(0x47, 0x46, 0x53, 0x4c); // "GFSL"
const COUNTER_AT = SEAL_MAGIC.length;
/** Bytes before the ciphertext: magic and counter. */
const SEAL_HEADER = COUNTER_AT + 8;
const TAG_BYTES = 16;
/** What sealing adds to every message. */
const SEAL_OVERHEAD = SEAL_HEADER + TAG_BYTES;

/** Coordinator → worker is `down`, worker → coordinator `up` (as NATS names a session's subjects). */
type Direction = 'down' | 'up';

export type SealFailure = 'bad_seal' | 'replayed';
export type Opened =
  | { ok: true; counter: number; plaintext: Uint8Array }
  | { ok: false; reason: SealFailure; detail: string };

/** One key and the context it is bound to: the AEAD itself, with no counter policy. */
export class SealKey {
  constructor(
    private readonly key: Buffer,
    private readonly context: Uint8Array,
  ) {}

  /** `parts` concatenated, sealed under `counter`. */
  seal(counter: number, parts: readonly Uint8Array[]): Uint8Array {
    const header = sealHeader(counter);
    const cipher = createCipheriv('aes-256-gcm', this.key, nonceOf(header));
    cipher.setAAD(Buffer.concat([header, this.context]));
    const out: Uint8Array[] = [header];
    for (const part of parts) out.push(cipher.update(part));
    out.push(cipher.final(), cipher.getAuthTag());
    return Buffer.concat(out);
  }

  /**
   * The plaintext and the counter it was sealed under, or why not. Never advances anything: callers decide on
   * order.
   */
  open(sealed: Uint8Array): Opened {
    if (sealed.byteLength < SEAL_OVERHEAD || !SEAL_MAGIC.every((b, i) => sealed[i] === b)) {
      return {
        ok: false,
        reason: 'bad_seal',
        detail: `an unsealed or truncated message (${sealed.byteLength} bytes)`,
      };
    }
    const header = sealed.subarray(0, SEAL_HEADER);
    const decipher = createDecipheriv('aes-256-gcm', this.key, nonceOf(header));
    decipher.setAAD(Buffer.concat([header, this.context]));
    decipher.setAuthTag(sealed.subarray(sealed.byteLength - TAG_BYTES));
    const body = decipher.update(sealed.subarray(SEAL_HEADER, sealed.byteLength - TAG_BYTES));
    try {
      decipher.final();
    } catch {
      return {
        ok: false,
        reason: 'bad_seal',
        detail: 'the message fails its authentication tag (forged, altered, or sealed for another session)',
      };
    }
    return { ok: true, counter: counterOf(header), plaintext: aligned(body) };
  }
}

/** The sending half of a session: counters from 1, one per message. */
export class Sealer {
  private counter = 0;

  constructor(private readonly key: SealKey) {}

  seal(...parts: Uint8Array[]): Uint8Array {
    return this.key.seal(++this.counter, parts);
  }
}

/**
 * The receiving half. `strict`: every counter must be the next one (an ordered, lossless stream:
 * WebSockets). `growing`: each must exceed the last accepted (NATS, which may lose messages that
 * its link resends under new counters).
 */
export class Opener {
  private last = 0;

  constructor(
    private readonly key: SealKey,
    private readonly order: 'strict' | 'growing',
  ) {}

  open(sealed: Uint8Array): Opened {
    const opened = this.key.open(sealed);
    if (!opened.ok) return opened;
    const { counter } = opened;
    const inPlace = this.order === 'strict' ? counter === this.last + 1 : counter > this.last;
    if (!inPlace)
      return {
        ok: false,
        reason: 'replayed',
        detail: `message ${counter} arrived after message ${this.last}`,
      };
    this.last = counter;
    return opened;
  }
}

/** The weights broadcast's keys, one per publisher id (a restarted coordinator is a new publisher). */
export class BroadcastSeal {
  private readonly keys = new Map<string, SealKey>();

  constructor(private readonly secret: SharedSecret) {}

  seal(publisherId: string, seq: number, frame: Uint8Array): Uint8Array {
    return this.keyFor(publisherId).seal(seq, [frame]);
  }

  /** The frame of broadcast `seq`; anything else (another publisher's key, another step) is bad_seal. */
  open(publisherId: string, seq: number, sealed: Uint8Array): Opened {
    const opened = this.keyFor(publisherId).open(sealed);
    if (opened.ok && opened.counter !== seq)
      return {
        ok: false,
        reason: 'replayed',
        detail: `broadcast ${opened.counter} offered as broadcast ${seq}`,
      };
    return opened;
  }

  private keyFor(publisherId: string): SealKey {
    let key = this.keys.get(publisherId);
    if (!key) {
      // A forger may name any number of publishers: keep only a few keys.
      if (this.keys.size >= 4) this.keys.delete(this.keys.keys().next().value!);
      const id = Buffer.from(publisherId, 'utf8');
      key = new SealKey(
        this.secret.deriveKey(id, Buffer.from('gradfleet broadcast v1', 'utf8')),
        Buffer.concat([Buffer.from('broadcast ', 'utf8'), id]),
      );
      this.keys.set(publisherId, key);
    }
    return key;
  }
}

/** Both halves of one side of a session, plus the run's broadcast key. */
export interface SessionKeys {
  send: Sealer;
  receive: Opener;
  broadcast: BroadcastSeal;
}

/** What both sides of a handshake know once it succeeded. */
export interface Handshake {
  workerNonce: Uint8Array;
  coordinatorNonce: Uint8Array;
  workerId: string;
}

function sessionId(h: Handshake): Buffer {
  const hash = createHash('sha256').update('gradfleet session');
  for (const part of [h.workerNonce, h.coordinatorNonce, Buffer.from(h.workerId, 'utf8')])
    hash.update(Uint32Array.of(part.length)).update(part);
  return hash.digest();
}

function directionKey(secret: SharedSecret, id: Uint8Array, direction: Direction): SealKey {
  const key = secret.deriveKey(id, Buffer.from(`gradfleet seal v1 ${direction}`, 'utf8'));
  return new SealKey(key, Buffer.concat([id, Buffer.from(direction, 'utf8')]));
}

export function sessionKeys(
  secret: SharedSecret,
  h: Handshake,
  role: 'coordinator' | 'worker',
  order: 'strict' | 'growing',
): SessionKeys {
  const id = sessionId(h);
  const [out, into]: Direction[] = role === 'coordinator' ? ['down', 'up'] : ['up', 'down'];
  return {
    send: new Sealer(directionKey(secret, id, out)),
    receive: new Opener(directionKey(secret, id, into), order),
    broadcast: new BroadcastSeal(secret),
  };
}

function sealHeader(counter: number): Buffer {
  if (!Number.isSafeInteger(counter) || counter < 0) throw new RangeError(`seal counter ${counter}`);
  const header = Buffer.alloc(SEAL_HEADER);
  header.set(SEAL_MAGIC);
  header.writeBigUInt64BE(BigInt(counter), COUNTER_AT);
  return header;
}

function nonceOf(header: Uint8Array): Buffer {
  const nonce = Buffer.alloc(12);
  nonce.set(header.subarray(COUNTER_AT, SEAL_HEADER), 4);
  return nonce;
}

function counterOf(header: Uint8Array): number {
  return Number(Buffer.from(header.buffer, header.byteOffset, header.byteLength).readBigUInt64BE(COUNTER_AT));
}

/**
 * Payloads decode as zero-copy Float32Array views only at a 4-byte offset: one copy if OpenSSL's buffer is
 * not.
 */
function aligned(bytes: Buffer): Uint8Array {
  return bytes.byteOffset % 4 === 0 ? bytes : Uint8Array.prototype.slice.call(bytes);
}
