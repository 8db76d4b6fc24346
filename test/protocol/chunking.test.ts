/** Chunking without a server: sizes at the edges, and every way chunks can go wrong. */
import { describe, expect, it } from 'vitest';
import { type Chunk, Reassembler, chunkFrame } from '../../protocol/chunking.js';

const frame = (n: number) => Uint8Array.from({ length: n }, (_, i) => (i * 131 + 7) & 255);
const feed = (r: Reassembler, chunks: Chunk[]) => chunks.map((c) => r.add(c.info, c.bytes));

describe('chunking', () => {
  it.each([
    [1, 1],
    [1024, 1],
    [1025, 2],
    [14_000_000, 14],
  ])('%i bytes in 1 KiB… chunks round-trip (%i chunk(s) of the size limit)', (size, _) => {
    const max = size === 14_000_000 ? 1_000_000 : 1024;
    const f = frame(size);
    const chunks = chunkFrame(1, f, max);
    expect(chunks.length).toBe(Math.ceil(size / max));
    expect(chunks.every((c) => c.bytes.byteLength <= max)).toBe(true);
    const results = feed(new Reassembler(), chunks);
    const last = results.at(-1)!;
    expect(last.kind).toBe('frame');
    expect(results.slice(0, -1).every((r) => r.kind === 'partial')).toBe(true);
    if (last.kind === 'frame') expect(Buffer.from(last.bytes).equals(Buffer.from(f))).toBe(true);
  });

  it('an empty frame is one empty chunk', () => {
    const [only] = chunkFrame(1, new Uint8Array(0), 10);
    expect(new Reassembler().add(only.info, only.bytes)).toMatchObject({ kind: 'frame', seq: 1 });
  });

  it('a lost chunk is detected and the partial frame dropped; the resent frame then completes', () => {
    const r = new Reassembler();
    const chunks = chunkFrame(1, frame(5000), 1000);
    expect(feed(r, [chunks[0], chunks[1], chunks[3]]).at(-1)).toMatchObject({ kind: 'gap', expected: 1 });
    expect(feed(r, chunks).at(-1)).toMatchObject({ kind: 'frame', seq: 1 });
  });

  it("a lost frame is detected by the next one's sequence number", () => {
    const r = new Reassembler();
    feed(r, chunkFrame(1, frame(10), 100));
    expect(feed(r, chunkFrame(3, frame(10), 100))[0]).toMatchObject({ kind: 'gap', expected: 2 });
    expect(r.delivered).toBe(1);
  });

  it('duplicated chunks and frames are dropped, never merged', () => {
    const r = new Reassembler();
    const chunks = chunkFrame(1, frame(3000), 1000);
    expect(feed(r, [chunks[0], chunks[0]]).map((x) => x.kind)).toEqual(['partial', 'duplicate']);
    const done = feed(r, [chunks[1], chunks[2]]).at(-1)!;
    expect(done.kind).toBe('frame');
    if (done.kind === 'frame') expect(Buffer.from(done.bytes).equals(Buffer.from(frame(3000)))).toBe(true);
    expect(feed(r, chunks).every((x) => x.kind === 'duplicate')).toBe(true);
  });

  it('a corrupted chunk fails the CRC; chunks of a different frame with the same number are refused', () => {
    const r = new Reassembler();
    const chunks = chunkFrame(1, frame(2000), 1000);
    const bad = Uint8Array.from(chunks[1].bytes);
    bad[10] ^= 1;
    expect(feed(r, [chunks[0], { info: chunks[1].info, bytes: bad }]).at(-1)).toMatchObject({
      kind: 'corrupt',
      expected: 1,
    });
    const other = chunkFrame(1, frame(1999), 1000);
    expect(feed(r, [chunks[0], other[1]]).at(-1)).toMatchObject({ kind: 'corrupt' });
  });

  it('a frame claiming more than the limit is refused before any allocation', () => {
    const r = new Reassembler(0, 1000);
    expect(r.add({ seq: 1, part: 0, parts: 1, length: 2 ** 40, crc: 0 }, new Uint8Array(1)).kind).toBe(
      'corrupt',
    );
  });
});
