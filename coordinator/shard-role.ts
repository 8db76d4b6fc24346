/**
 * The coordinator's side of its shard reducers' sessions (shard/), served on the coordinator's
 * PeerPool by whoever runs shards (ShardSet, through WorkerPool.setShardEvents): admits each reducer
 * once by name, welcomes it, and hands its shard messages and its loss to the ShardEvents.
 */
import type { Logger } from 'pino';
import type { Channel } from '../protocol/channel.js';
import type { PeerMessage, ShardMessage, ToShardMessage } from '../protocol/messages.js';
import type { PeerPool, PeerRole, WelcomeMessage } from '../protocol/peer-pool.js';

/** A shard reducer joined to the coordinator (shard/): it serves workers at `serves`. */
export interface ShardSession {
  readonly id: string;
  readonly channel: Channel<PeerMessage, ToShardMessage>;
  readonly serves: string;
  state: 'joined' | 'gone';
}

/** A shard reducer joined; its messages and its loss follow. */
export interface ShardEvents {
  joined(session: ShardSession): void;
  message(session: ShardSession, message: ShardMessage, payload: Float32Array): void;
  lost(session: ShardSession, reason: string): void;
}

export function shardRole(
  pool: PeerPool,
  settings: { welcome: WelcomeMessage; log: Logger; events: ShardEvents },
): PeerRole<'shard'> {
  const sessions = new Map<string, ShardSession>();
  const { welcome, log, events } = settings;
  return {
    admit: (hello, channel) => {
      if (sessions.has(hello.workerId))
        return {
          refuse: 'duplicate_worker',
          why: `a shard reducer named ${hello.workerId} is already connected`,
        };
      // The pool hands this role only hellos that name where they serve.
      const serves = hello.serves!;
      const session: ShardSession = { id: hello.workerId, channel, serves, state: 'joined' };
      sessions.set(session.id, session);
      // Its tensors travel as f32 whatever the run's wire (a bf16 Adam state would not resume bit for bit).
      log.info(
        { shard: session.id, peer: channel.peer, serves },
        `shard reducer ${session.id} joined from ${channel.peer}, serving ${serves}`,
      );
      channel.send(pool.welcome(welcome));
      events.joined(session);
      return {
        message: ({ message, payload }) => {
          switch (message.type) {
            case 'hello':
            case 'auth':
              return channel.reject('unexpected_message', `${message.type} from shard reducer ${session.id}`);
            default:
              return events.message(session, message, payload);
          }
        },
        lost: (reason) => {
          session.state = 'gone';
          sessions.delete(session.id);
          events.lost(session, reason);
        },
      };
    },
  };
}
