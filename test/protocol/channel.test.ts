/**
 * A Channel turns a ProtocolError into a rejection of the reason it carries: the codec's for a malformed
 * frame, a role's own when its handler throws one. Anything else a handler throws is the channel's own
 * failure (`internal`), never counted against the peer.
 */
import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../common/logger.js';
import { Channel, RejectionCounts } from '../../protocol/channel.js';
import { type Frame, decodeFrame, encodeFrame } from '../../protocol/codec.js';
import { ProtocolError, type RejectionReason } from '../../protocol/errors.js';
import { WORKER_MESSAGE_TYPES } from '../../protocol/messages.js';
import { MemoryLink } from '../helpers/memory-link.js';

/** A coordinator's side of a channel on a probe link; `handle` plays its role's handler. */
function probe(handle: (frame: Frame) => void = () => {}) {
  const link = new MemoryLink('peer-1');
  const rejections = new RejectionCounts();
  new Channel(link, {
    log: silentLogger,
    rejections,
    maxFrameBytes: 4096,
    replyToRejections: true,
    accepts: WORKER_MESSAGE_TYPES,
    onMessage: handle,
    onClose: () => {},
  });
  /** The error frames the channel answered with: code and message. */
  const answers = () => link.sent.map((bytes) => decodeFrame(bytes).message);
  return { link, rejections, answers };
}

const heartbeat = () => encodeFrame({ type: 'heartbeat', sentAt: 1 });

/** What decoding `bytes` throws: the ProtocolError the channel acts on. */
function decodeError(bytes: Uint8Array, maxFrameBytes?: number): ProtocolError {
  try {
    decodeFrame(bytes, { maxFrameBytes });
  } catch (err) {
    if (err instanceof ProtocolError) return err;
    throw err;
  }
  throw new Error('decoded fine');
}

describe('a malformed frame', () => {
  const badMagic = heartbeat();
  badMagic[0] ^= 0xff;
  const badVersion = heartbeat();
  badVersion[4] = 99;
  const cases: Array<[string, Uint8Array, RejectionReason]> = [
    ['shorter than the preamble', new Uint8Array(5), 'too_short'],
    ['over the frame limit', new Uint8Array(5000), 'too_large'],
    ['with the wrong magic', badMagic, 'bad_magic'],
    ['of another protocol version', badVersion, 'unknown_version'],
    [
      'with a payload it does not declare',
      new Uint8Array([...heartbeat(), 0, 0, 0, 0]),
      'wrong_payload_size',
    ],
  ];

  it.each(cases)(
    '%s: its ProtocolError carries %2$s, and the channel rejects it under that reason',
    (_, bytes, reason) => {
      const error = decodeError(bytes, 4096);
      expect(error.reason).toBe(reason);
      expect(error.message).toMatch(new RegExp(`^${reason}: `));
      const { link, rejections, answers } = probe(() => {
        throw new Error('a malformed frame must not reach the handler');
      });
      link.receive(bytes);
      expect(rejections.byReason).toEqual({ [reason]: 1 });
      expect(answers()).toEqual([{ type: 'error', code: reason, message: error.message }]);
    },
  );
});

describe("a role's handler", () => {
  it("throwing a ProtocolError: the peer's message is rejected under the role's reason", () => {
    const { link, rejections, answers } = probe(() => {
      throw new ProtocolError('stale_result', 'a heartbeat from the past');
    });
    link.receive(heartbeat());
    expect(rejections.byReason).toEqual({ stale_result: 1 });
    expect(answers()).toEqual([
      { type: 'error', code: 'stale_result', message: 'stale_result: a heartbeat from the past' },
    ]);
  });

  it('throwing anything else: an internal failure of this side, not counted against the peer', () => {
    const { link, rejections, answers } = probe(() => {
      throw new Error('a handler bug');
    });
    link.receive(heartbeat());
    expect(rejections.total).toBe(0);
    expect(answers()).toEqual([{ type: 'error', code: 'internal', message: 'a handler bug' }]);
  });
});
