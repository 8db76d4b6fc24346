/**
 * Frames bigger than a message-size limit (NATS's max_payload) travel as numbered chunks and are
 * reassembled in order. Every chunk names its frame (a per-direction sequence number), its place
 * (part / parts), the frame's length and CRC-32, so a lost, duplicated or corrupted chunk is
 * detected, reported, and never merged into a frame.
 */
import { crc32 } from 'node:zlib';
import { DEFAULT_MAX_FRAME_BYTES } from './codec.js';

export interface ChunkInfo {
  seq: number;
  part: number;
  parts: number;
  /** The whole frame's length and CRC-32. */
  length: number;
  crc: number;
}

export interface Chunk {
  info: ChunkInfo;
  /** A view into the frame: no copy. */
  bytes: Uint8Array;
}

export function chunkFrame(seq: number, frame: Uint8Array, maxChunkBytes: number): Chunk[] {
  if (!(maxChunkBytes >= 1)) throw new RangeError(`chunk size must be at least 1 byte, got ${maxChunkBytes}`);
  const parts = Math.max(1, Math.ceil(frame.byteLength / maxChunkBytes));
  const crc = crc32(frame);
  return Array.from({ length: parts }, (_, part) => ({
    info: { seq, part, parts, length: frame.byteLength, crc },
    bytes: frame.subarray(part * maxChunkBytes, Math.min(frame.byteLength, (part + 1) * maxChunkBytes)),
  }));
}

export type Reassembly =
  | { kind: 'frame'; seq: number; bytes: Uint8Array }
  | { kind: 'partial' }
  /** Already delivered, or a repeat of the chunk just taken: dropped. */
  | { kind: 'duplicate'; seq: number; part: number }
  /**
   * Chunks or frames went missing: the partial frame is dropped; frames from `expected` on must be resent.
   */
  | { kind: 'gap'; expected: number; detail: string }
  /** The chunks do not make the frame they claim (length or CRC): dropped; resend from `expected`. */
  | { kind: 'corrupt'; expected: number; detail: string };

/**
 * Rebuilds frames from chunks arriving in order; `delivered` is the last complete frame's sequence number.
 * A frame's buffer is allocated at its first chunk, from the length that chunk claims: hence a limit
 * even when none is given (the decoder's default), or one chunk header could ask for terabytes.
 */
export class Reassembler {
  private partial: { info: ChunkInfo; buffer: Uint8Array; filled: number; nextPart: number } | undefined;

  constructor(
    public delivered = 0,
    public maxFrameBytes = DEFAULT_MAX_FRAME_BYTES,
  ) {}

  get expected(): number {
    return this.delivered + 1;
  }

  add(info: ChunkInfo, bytes: Uint8Array): Reassembly {
    const { seq, part, parts, length } = info;
    // Any non-integer would poison `delivered` (NaN compares false with everything).
    if (![seq, part, parts, length].every(Number.isSafeInteger))
      return this.fail(
        'corrupt',
        `chunk header ${JSON.stringify({ seq, part, parts, length })} is not whole numbers`,
      );
    if (seq < this.expected) return { kind: 'duplicate', seq, part };
    if (!(part >= 0 && part < parts) || !(length >= 0) || length > this.maxFrameBytes) {
      return this.fail('corrupt', `chunk ${part}/${parts} of frame ${seq} claims ${length} bytes`);
    }
    if (seq > this.expected)
      return this.fail('gap', `frame ${seq} arrived while frame ${this.expected} was expected`);
    const p = this.partial;
    // Checked before "duplicate": a partial frame started by a bad first chunk would otherwise take
    // every resent chunk of a one-chunk frame for a repeat, and the stream would never recover.
    if (p && (p.info.parts !== parts || p.info.length !== length || p.info.crc !== info.crc)) {
      return this.fail('corrupt', `chunk ${part} of frame ${seq} disagrees with its first chunk`);
    }
    if (p && part < p.nextPart) return { kind: 'duplicate', seq, part };
    if ((p?.nextPart ?? 0) !== part)
      return this.fail(
        'gap',
        `chunk ${part} of frame ${seq} arrived while chunk ${p?.nextPart ?? 0} was expected`,
      );
    // A fresh buffer per frame: aligned (payloads decode as zero-copy Float32Array views) and owned
    // (transports may hand out views into a shared read buffer).
    const current = p ?? { info, buffer: new Uint8Array(length), filled: 0, nextPart: 0 };
    if (current.filled + bytes.byteLength > length)
      return this.fail('corrupt', `frame ${seq} overflows its ${length} bytes at chunk ${part}`);
    current.buffer.set(bytes, current.filled);
    current.filled += bytes.byteLength;
    current.nextPart = part + 1;
    this.partial = current;
    if (current.nextPart < parts) return { kind: 'partial' };
    this.partial = undefined;
    if (current.filled !== length)
      return this.fail('corrupt', `frame ${seq} has ${current.filled} of its ${length} bytes`);
    if (crc32(current.buffer) !== info.crc)
      return this.fail('corrupt', `frame ${seq} fails its CRC-32 check`);
    this.delivered = seq;
    return { kind: 'frame', seq, bytes: current.buffer };
  }

  /**
   * Frame `seq` came whole by another way (a broadcast its link referred to): in its place, it is delivered.
   */
  acceptWhole(seq: number, bytes: Uint8Array): Reassembly {
    if (!Number.isSafeInteger(seq)) return this.fail('corrupt', `frame number ${seq} is not a whole number`);
    if (seq < this.expected) return { kind: 'duplicate', seq, part: 0 };
    if (seq > this.expected)
      return this.fail('gap', `frame ${seq} arrived while frame ${this.expected} was expected`);
    this.partial = undefined;
    this.delivered = seq;
    return { kind: 'frame', seq, bytes };
  }

  private fail(kind: 'gap' | 'corrupt', detail: string): Reassembly {
    this.partial = undefined;
    return { kind, expected: this.expected, detail };
  }
}
