/**
 * How a chunk (chunking.ts) names itself in NATS headers: the same on a session's subjects and on
 * the broadcast subject.
 */
import { type MsgHdrs, headers as natsHeaders } from 'nats';
import type { ChunkInfo } from './chunking.js';

export const CHUNK_HEADERS = {
  seq: 'Gf-Seq',
  part: 'Gf-Part',
  parts: 'Gf-Parts',
  length: 'Gf-Len',
  crc: 'Gf-Crc',
} as const;

export function chunkHeaders(info: ChunkInfo): MsgHdrs {
  const h = natsHeaders();
  for (const key of Object.keys(CHUNK_HEADERS) as Array<keyof ChunkInfo>)
    h.set(CHUNK_HEADERS[key], String(info[key]));
  return h;
}

/**
 * The chunk fields of a message's headers, or undefined unless all are whole numbers that can name a chunk.
 */
export function chunkInfoOf(h: MsgHdrs | undefined): ChunkInfo | undefined {
  if (!h) return undefined;
  const H = CHUNK_HEADERS;
  const info = {
    seq: Number(h.get(H.seq)),
    part: Number(h.get(H.part)),
    parts: Number(h.get(H.parts)),
    length: Number(h.get(H.length)),
    crc: Number(h.get(H.crc)),
  };
  return Object.values(info).every((v) => Number.isSafeInteger(v) && v >= 0) && info.seq > 0 && info.parts > 0
    ? info
    : undefined;
}
