/**
 * A sealed session's NATS messages: the link's own headers (chunk numbers, controls, acks) travel
 * inside the seal with the data, and the message shows only `Gf-Sealed`. So a party on the subject
 * sees neither the frames nor even their numbering, and cannot forge an ack, a resume, a close or
 * a chunk: the link never acts on anything it could not open (sealing.ts).
 *
 *   plaintext = u32 LE length of the headers' JSON ‖ that JSON ‖ the message's data
 */
import { type MsgHdrs, headers as natsHeaders } from 'nats';
import type { Opener, SealFailure, Sealer } from './sealing.js';

const MARK = 'Gf-Sealed';

export const SEALED_HEADER = (): MsgHdrs => {
  const h = natsHeaders();
  h.set(MARK, '1');
  return h;
};

/** Headers stay small (a control's reason is cut to 200 characters): a bound on what a peer may claim. */
const MAX_HEADER_JSON = 4096;

export function sealMessage(sealer: Sealer, h: MsgHdrs, data: Uint8Array): Uint8Array {
  const fields: Record<string, string> = {};
  for (const key of h.keys()) fields[key] = h.get(key);
  const json = Buffer.from(JSON.stringify(fields), 'utf8');
  return sealer.seal(new Uint8Array(Uint32Array.of(json.length).buffer), json, data);
}

export type Unsealed =
  | { ok: true; headers: MsgHdrs; data: Uint8Array }
  /** `plain`: the message was not sealed at all (as against sealed wrongly). */
  | { ok: false; reason: SealFailure; detail: string; plain: boolean };

export function unsealMessage(opener: Opener, h: MsgHdrs | undefined, message: Uint8Array): Unsealed {
  if (h?.get(MARK) !== '1')
    return { ok: false, reason: 'bad_seal', detail: 'an unsealed message in a sealed session', plain: true };
  const opened = opener.open(message);
  if (!opened.ok) return { ...opened, plain: false };
  const bytes = opened.plaintext;
  const length = bytes.byteLength >= 4 ? Buffer.from(bytes.buffer, bytes.byteOffset, 4).readUInt32LE(0) : -1;
  // Sealed by the peer, so malformed only through a bug of its own: still never trusted blindly.
  if (length < 0 || length > MAX_HEADER_JSON || 4 + length > bytes.byteLength)
    return {
      ok: false,
      reason: 'bad_seal',
      detail: 'a sealed message with a malformed inside',
      plain: false,
    };
  const headers = natsHeaders();
  try {
    const fields = JSON.parse(
      Buffer.from(bytes.buffer, bytes.byteOffset + 4, length).toString('utf8'),
    ) as Record<string, unknown>;
    for (const [key, value] of Object.entries(fields)) if (typeof value === 'string') headers.set(key, value);
  } catch {
    return { ok: false, reason: 'bad_seal', detail: 'a sealed message with malformed headers', plain: false };
  }
  // A view, not a copy: the reassembler copies chunks into a frame buffer of its own.
  return { ok: true, headers, data: bytes.subarray(4 + length) };
}
