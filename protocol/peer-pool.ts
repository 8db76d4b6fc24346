/**
 * The side that is joined (the coordinator, and a shard reducer for the workers that send it slices):
 * admits links within the limits (admission.ts), holds peers that have not authenticated to a small
 * byte budget (budgets.ts), runs the handshake (hello → [challenge → auth]) and hands each peer to the
 * role served for its kind of hello (`serve`): a worker, or a shard reducer (whose hello names where it
 * serves workers). It answers what every session says (heartbeats, errors, shutdowns), keeps the
 * heartbeat, drops peers gone silent, and shuts them all down. What a role's peers may do, it decides.
 *
 * Until a link has authenticated, the only message it may send is its part of the handshake, and
 * its frames are held to a small size: nothing else it says is ever processed.
 */
import type { Logger } from 'pino';
import { unreachable } from '../common/exhaustive.js';
import { type Admission, AdmissionControl, type AdmissionLimits, DEFAULT_ADMISSION } from './admission.js';
import { type SharedSecret, newNonce, proofsMatch } from './auth.js';
import { PreAdmissionBudget } from './budgets.js';
import { parseJoinPass, passHoldsSecret } from './join-pass.js';
import { Channel, type RejectionCounts } from './channel.js';
import type { Frame } from './codec.js';
import type { RejectionReason } from './errors.js';
import {
  type CoordinatorMessage,
  type MessageOf,
  PEER_MESSAGE_TYPES,
  type PeerMessage,
  SHARD_MESSAGE_TYPES,
  type ShardMessage,
  type ToShardMessage,
  WORKER_MESSAGE_TYPES,
  type WorkerMessage,
} from './messages.js';
import type { Link, Listener } from './transport.js';

/** Who joined, as its hello says: a shard reducer names where it serves workers (`serves`), a worker does not. */
export type PeerRoleName = 'worker' | 'shard';

/**
 * The joined side's end of a link: until the hello it cannot know whether a worker or a shard reducer
 * joined, so it hears either's messages; each role sends its own.
 */
export type PeerChannel = Channel<PeerMessage, CoordinatorMessage | ToShardMessage>;

/** The run's welcome, less the heartbeat terms, which the pool fills in from its own settings. */
export type WelcomeMessage = Omit<MessageOf<'welcome'>, 'heartbeatMs' | 'heartbeatTimeoutMs'>;

/** What every session says, whatever its role: the pool answers these itself. */
type SessionMessage = MessageOf<'heartbeat' | 'error' | 'shutdown'>;
interface SaidBy {
  worker: WorkerMessage;
  shard: ShardMessage;
}
/** What a role's peers may say that the role answers. */
export type RoleMessage<K extends PeerRoleName> = Exclude<SaidBy[K], SessionMessage>;

/** An admitted peer, as its role hands it to the pool. */
export interface AdmittedPeer<K extends PeerRoleName> {
  /** A frame of its role's (never once it is lost). */
  message(frame: Frame<RoleMessage<K>>): void;
  /** It left, went silent, or the pool shut down: called once, after the pool logged it. */
  lost(reason: string): void;
}

/** A hello turned away: the pool answers it under `refuse` and closes the link. */
export interface Refusal {
  refuse: RejectionReason;
  why: string;
}

/** Serves one kind of peer (`PeerPool.serve`): decides who of that kind joins, and what they may do. */
export interface PeerRole<K extends PeerRoleName> {
  /**
   * A hello of this role's kind, authenticated when the pool has a secret: refuse it (door closed, a
   * duplicate, no room), or welcome the peer (`PeerPool.welcome`) and say where its messages go.
   */
  admit(hello: MessageOf<'hello'>, channel: PeerChannel): AdmittedPeer<K> | Refusal;
}

/** How logs and refusals name each kind of peer, and which messages are its. */
const KINDS = {
  worker: {
    noun: 'worker',
    says: WORKER_MESSAGE_TYPES,
    unserved: (id: string) => `${id} is a worker, and none join here`,
    notItsMessage: (type: string, id: string) =>
      `${type} from worker ${id}: that is a shard reducer's message`,
  },
  shard: {
    noun: 'shard reducer',
    says: SHARD_MESSAGE_TYPES,
    unserved: (id: string) =>
      `${id} is a shard reducer, and this run has none (start the coordinator with --shards)`,
    notItsMessage: (type: string, id: string) => `${type} from shard reducer ${id}`,
  },
} as const;

/**
 * In this order: told to shut down, a shard reducer tells its workers too, and a worker that hears that
 * before the coordinator's own word would take it for a loss.
 */
const ORDER: readonly PeerRoleName[] = ['worker', 'shard'];

function roleOf(hello: MessageOf<'hello'>): PeerRoleName {
  return hello.serves === undefined ? 'worker' : 'shard';
}

function saidBy(kind: PeerRoleName, message: PeerMessage): boolean {
  return (KINDS[kind].says as readonly string[]).includes(message.type);
}

interface Member {
  readonly kind: PeerRoleName;
  readonly id: string;
  readonly channel: PeerChannel;
  readonly peer: AdmittedPeer<PeerRoleName>;
  /** When (performance.now()) a valid frame last came from it. */
  lastHeard: number;
  gone: boolean;
}

export interface PeerPoolOptions {
  listener: Listener;
  log: Logger;
  rejections: RejectionCounts;
  /** The frame limit once a peer is admitted (until then, HANDSHAKE_FRAME_BYTES). */
  maxFrameBytes?: number;
  /** A link that has not finished the handshake by then is closed. */
  helloTimeoutMs?: number;
  /** Peers must prove they hold it (auth.ts); none: anyone may join. */
  secret?: SharedSecret;
  limits?: AdmissionLimits;
  /**
   * Heartbeat period, and the silence after which a peer is dropped; both go to peers in the welcome.
   */
  heartbeat: { intervalMs: number; timeoutMs: number };
}

/**
 * A connection that has not even said hello by then is closed: an idle socket holds one of
 * --max-connections' slots for this long, not for the whole handshake time.
 */
const FIRST_HELLO_MS = 5_000;

/** Workers whose join-pass trouble is logged, at most. */
const MAX_PASS_WARNINGS = 64;

/**
 * Bytes a peer may send before it has authenticated, frames and framing together: a hello and an auth are a
 * few hundred.
 */
const HANDSHAKE_FRAME_BYTES = 16 * 1024;

/**
 * A link between connecting and being admitted. awaiting_hello: nothing heard yet; challenged: our
 * challenge (with `nonce`) is out and unanswered; refused: turned away (`why`), its link closing.
 */
type Handshake =
  | { state: 'awaiting_hello' }
  | { state: 'challenged'; hello: MessageOf<'hello'>; nonce: Uint8Array }
  | { state: 'refused'; why: string };
type HandshakeStep = Handshake | { member: Member };

/** Counts and answers a refusal; the caller closes the link once the state is `refused`. */
function refusal(channel: PeerChannel, reason: RejectionReason, why: string): Handshake {
  channel.reject(reason, why);
  return { state: 'refused', why };
}

export class PeerPool {
  /** The limits on links and workers; a role asks it whether another worker fits. */
  readonly admission: AdmissionControl;
  private readonly roles = new Map<PeerRoleName, PeerRole<PeerRoleName>>();
  private readonly members: Record<PeerRoleName, Set<Member>> = { worker: new Set(), shard: new Set() };
  private closing = false;
  private openLinks = 0;
  /** Workers told once that their join pass does not count (a clock off, say), so a flood is not a log flood. */
  private readonly passWarned = new Set<string>();
  private readonly preAdmission: PreAdmissionBudget;
  private readonly heartbeatTimer: NodeJS.Timeout;

  constructor(private readonly options: PeerPoolOptions) {
    const limits = options.limits ?? DEFAULT_ADMISSION;
    this.admission = new AdmissionControl(limits, performance.now());
    this.preAdmission = new PreAdmissionBudget(
      HANDSHAKE_FRAME_BYTES,
      limits.preAuthBytes ?? DEFAULT_ADMISSION.preAuthBytes,
    );
    options.listener.onLink((link) => this.accept(link));
    // Connections that are not links yet (ws sockets before their upgrade) count against the same limit.
    options.listener.guard?.({
      maxConnections: limits.maxConnections,
      refused: (peer, open) => {
        const full = this.admission.connectionsFull(open);
        if (full) this.refuse(peer, full);
      },
    });
    this.heartbeatTimer = setInterval(() => this.beat(), options.heartbeat.intervalMs);
    this.heartbeatTimer.unref();
  }

  /**
   * From now on hellos of `kind` go to `role`; until a kind is served, its hellos are refused. Each kind is
   * served once.
   */
  serve<K extends PeerRoleName>(kind: K, role: PeerRole<K>): void {
    if (this.roles.has(kind)) throw new Error(`${KINDS[kind].noun}s are already served here`);
    this.roles.set(kind, role);
  }

  /** `welcome` with the pool's heartbeat terms: what a role sends a peer it admits. */
  welcome(welcome: WelcomeMessage): MessageOf<'welcome'> {
    const { intervalMs, timeoutMs } = this.options.heartbeat;
    return { ...welcome, heartbeatMs: intervalMs, heartbeatTimeoutMs: timeoutMs };
  }

  /** Tells every admitted peer, workers first, and closes its link; none is heard from again. */
  shutdown(reason: string): void {
    this.closing = true;
    clearInterval(this.heartbeatTimer);
    for (const m of this.all()) {
      m.channel.send({ type: 'shutdown', reason });
      m.channel.link.close(reason);
    }
  }

  private all(): Member[] {
    return ORDER.flatMap((kind) => [...this.members[kind]]);
  }

  /** Counts and logs a connection turned away; the caller closes it. */
  private refuse(peer: string, admission: Extract<Admission, { ok: false }>): void {
    this.options.rejections.record(admission.reason);
    this.options.log.warn(
      { peer, reason: admission.reason },
      `refused a connection from ${peer}: ${admission.detail}`,
    );
  }

  /**
   * The worker a link's join pass is for, when the pass holds our secret and is fresh and new (then the link
   * skips the join-rate limits); undefined otherwise, and the limits apply as to anyone.
   */
  private passFor(link: Link): string | undefined {
    const { secret, log } = this.options;
    if (link.joinPass === undefined || !secret) return undefined;
    const pass = parseJoinPass(link.joinPass);
    // A pass that is none, or made with another secret: the handshake will tell that worker what is wrong.
    if (!pass || !passHoldsSecret(secret, pass)) return undefined;
    const taken = this.admission.takePass(pass, Date.now());
    if (taken.ok) return pass.workerId;
    if (!this.passWarned.has(pass.workerId) && this.passWarned.size < MAX_PASS_WARNINGS) {
      this.passWarned.add(pass.workerId);
      log.warn(
        { peer: link.peer, worker: pass.workerId, pass: taken.why },
        `worker ${pass.workerId}'s join pass does not count: ${taken.detail}; its joins are rate-limited like anyone's`,
      );
    }
    return undefined;
  }

  private accept(link: Link): void {
    const { log, rejections, maxFrameBytes } = this.options;
    const passed = this.passFor(link);
    const admitted = this.admission.admitConnection(
      this.openLinks,
      performance.now(),
      link.source,
      passed !== undefined,
    );
    if (!admitted.ok) {
      this.refuse(link.peer, admitted);
      link.close(admitted.detail);
      return;
    }
    this.openLinks++;
    let member: Member | undefined;
    let handshake: Handshake = { state: 'awaiting_hello' };
    const budget = this.preAdmission.open();
    // The next state is taken before a refusal closes the link, so that the close sees it.
    const advance = (next: HandshakeStep) => {
      if ('member' in next) {
        member = next.member;
        channel.maxFrameBytes = maxFrameBytes;
        budget.release();
        return;
      }
      handshake = next;
      if (next.state === 'refused') link.close(next.why);
    };
    const channel: PeerChannel = new Channel(link, {
      log,
      rejections,
      maxFrameBytes: HANDSHAKE_FRAME_BYTES,
      replyToRejections: true,
      accepts: PEER_MESSAGE_TYPES,
      onWireBytes: (bytes) => {
        if (member) return;
        const charged = budget.charge(bytes);
        if (charged.ok) return;
        rejections.record(charged.reason);
        log.warn(
          { peer: link.peer, reason: charged.reason },
          `dropped ${link.peer} before admission: ${charged.detail}`,
        );
        link.close(charged.detail);
      },
      onUnexpected: (message) => {
        if (member) return channel.reject('unexpected_message', `${message.type} is not a worker's message`);
        advance(refusal(channel, 'unauthenticated', `${message.type} before authenticating`));
      },
      onMessage: (frame) => {
        if (!member) return advance(this.shake(channel, handshake, frame.message, passed));
        // A dropped peer's frames still in flight (it was frozen, then thawed) are moot, not bad.
        if (member.gone) return;
        member.lastHeard = performance.now();
        this.hear(member, frame);
      },
      onClose: (reason) => {
        this.openLinks--;
        budget.release();
        clearTimeout(helloTimer);
        clearTimeout(firstHelloTimer);
        if (member) this.drop(member, reason);
        else if (handshake.state === 'challenged') {
          // A peer without the secret cannot answer; one that doubts ours leaves. Either way it failed to
          // authenticate.
          rejections.record('auth_failed');
          const { workerId, serves } = handshake.hello;
          log.warn(
            { peer: link.peer, worker: workerId, reason: 'auth_failed' },
            `${serves === undefined ? 'worker' : 'shard reducer'} ${workerId} (${link.peer}) failed to authenticate: its secret differs from ours, or it has none; give both the same GRADFLEET_SECRET (it left: ${reason})`,
          );
        }
      },
    });
    const helloTimer = setTimeout(() => {
      if (!member) link.close('no handshake in time');
    }, this.options.helloTimeoutMs ?? 15_000);
    const firstHelloTimer = setTimeout(
      () => {
        if (!member && handshake.state === 'awaiting_hello') link.close('no hello in time');
      },
      Math.min(FIRST_HELLO_MS, this.options.helloTimeoutMs ?? FIRST_HELLO_MS),
    );
  }

  /**
   * One handshake message: the handshake's next state, or the member once its role admitted it. `passFor`:
   * the worker whose join pass let the link in, which its hello must name.
   */
  private shake(
    channel: PeerChannel,
    handshake: Handshake,
    message: PeerMessage,
    passFor: string | undefined,
  ): HandshakeStep {
    const { secret } = this.options;
    switch (handshake.state) {
      case 'awaiting_hello': {
        if (message.type !== 'hello')
          return refusal(channel, 'unauthenticated', `${message.type} before hello`);
        if (passFor !== undefined && message.workerId !== passFor)
          return refusal(
            channel,
            'auth_failed',
            `hello from ${message.workerId} on a join pass for ${passFor}`,
          );
        if (!secret) return this.admit(channel, message);
        const nonce = newNonce();
        channel.send({ type: 'challenge', nonce, proof: secret.coordinatorProof(message.nonce, nonce) });
        return { state: 'challenged', hello: message, nonce };
      }
      case 'challenged': {
        const { hello, nonce } = handshake;
        if (message.type !== 'auth' || !secret)
          return refusal(channel, 'unauthenticated', `${message.type} before authenticating`);
        const expected = secret.workerProof(nonce, hello.nonce, hello.workerId);
        if (!proofsMatch(expected, message.proof))
          return refusal(channel, 'auth_failed', `worker ${hello.workerId} does not hold the secret`);
        channel.secure(
          secret,
          { workerNonce: hello.nonce, coordinatorNonce: nonce, workerId: hello.workerId },
          'coordinator',
        );
        return this.admit(channel, hello);
      }
      // Its link is closing: nothing more it says is processed, but it is still counted.
      case 'refused':
        return refusal(channel, 'unauthenticated', `${message.type} after its handshake was refused`);
      default:
        return unreachable(handshake, 'handshake state');
    }
  }

  /** The hello's role admits or refuses it; a kind nobody serves is refused here. */
  private admit(channel: PeerChannel, hello: MessageOf<'hello'>): HandshakeStep {
    const kind = roleOf(hello);
    const role = this.roles.get(kind);
    if (!role) return refusal(channel, 'unexpected_message', KINDS[kind].unserved(hello.workerId));
    const admitted = role.admit(hello, channel);
    if ('refuse' in admitted) return refusal(channel, admitted.refuse, admitted.why);
    const member: Member = {
      kind,
      id: hello.workerId,
      channel,
      peer: admitted,
      lastHeard: performance.now(),
      gone: false,
    };
    this.members[kind].add(member);
    return { member };
  }

  /** A frame from an admitted peer: what every session says is answered here, the rest by its role. */
  private hear(member: Member, { message, payload, dtype }: Frame<PeerMessage>): void {
    const { kind, id, channel } = member;
    const { noun } = KINDS[kind];
    switch (message.type) {
      case 'heartbeat':
        return; // lastHeard is already updated
      case 'error':
        this.options.log.warn(
          { [kind]: id, code: message.code },
          `${noun} ${id} reports: ${message.message}`,
        );
        return;
      case 'shutdown':
        return channel.link.close(`${noun} left: ${message.reason}`);
      default:
        if (!saidBy(kind, message))
          return channel.reject('unexpected_message', KINDS[kind].notItsMessage(message.type, id));
        return member.peer.message({ message, payload, dtype });
    }
  }

  /** Heartbeats out; peers silent past the timeout (dead, stopped, cut off) are dropped. */
  private beat(): void {
    const now = performance.now();
    const { timeoutMs } = this.options.heartbeat;
    for (const m of this.all()) {
      if (now - m.lastHeard > timeoutMs) {
        const reason = `no heartbeat for ${((now - m.lastHeard) / 1000).toFixed(1)} s`;
        this.drop(m, reason);
        m.channel.link.close(reason);
      } else {
        m.channel.send({ type: 'heartbeat', sentAt: Date.now() });
      }
    }
  }

  private drop(member: Member, reason: string): void {
    if (member.gone) return;
    member.gone = true;
    this.members[member.kind].delete(member);
    this.options.log[this.closing ? 'info' : 'warn'](
      { [member.kind]: member.id, reason },
      `${KINDS[member.kind].noun} ${member.id} left: ${reason}`,
    );
    member.peer.lost(reason);
  }
}
