/**
 * NATS as the second transport: the coordinator answers join requests on `<subject>.join` and
 * gives each worker a session of two subjects (`<subject>.s.<session>.up` and `.down`); each side
 * then speaks the same frames as over WebSockets through a NatsLink. The weights go once per step
 * to every worker on `<subject>.weights` (nats-broadcast.ts). Connections reconnect on their own
 * (any server of the list, or a cluster node the server announces) and every link resyncs.
 */
import { readFileSync } from 'node:fs';
import {
  type Authenticator,
  type ConnectionOptions,
  type NatsConnection,
  connect,
  credsAuthenticator,
  nkeyAuthenticator,
  nuid,
} from 'nats';
import { BroadcastPublisher, broadcastSubject } from './nats-broadcast.js';
import { NatsLink } from './nats-link.js';
import { type Link, type Listener, TransportError } from './transport.js';

export interface NatsOptions {
  /** One or more server URLs (nats://host:4222, tls://host:4222). */
  servers: string[];
  /** Subject prefix: coordinator and workers of one run must agree on it. */
  subject: string;
  user?: string;
  pass?: string;
  token?: string;
  /** A .creds file (JWT + NKey seed) or an NKey seed file. */
  credsFile?: string;
  nkeySeedFile?: string;
  tls?: { caFile?: string; certFile?: string; keyFile?: string };
  /**
   * Refuse any server that does not speak TLS (also when every URL is tls://): no downgrade, no credentials
   * in the clear.
   */
  requireTls?: boolean;
  heartbeatMs?: number;
  deadAfterMs?: number;
}

/** Room left in each message for our headers (the server counts them against max_payload). */
const HEADER_ROOM = 1024;

function authenticator(nats: NatsOptions): Authenticator | undefined {
  const read = (path: string, what: string) => {
    try {
      return readFileSync(path);
    } catch (err) {
      throw new TransportError(`cannot read the NATS ${what} ${path}: ${(err as Error).message}`);
    }
  };
  if (nats.credsFile) return credsAuthenticator(read(nats.credsFile, 'credentials file'));
  if (nats.nkeySeedFile)
    return nkeyAuthenticator(
      new TextEncoder().encode(read(nats.nkeySeedFile, 'NKey seed file').toString('utf8').trim()),
    );
  return undefined;
}

function connectionOptions(nats: NatsOptions, name: string): ConnectionOptions {
  // With `tls` set, nats.js requires TLS of the server; without it, it upgrades only if the server
  // offers TLS, which an active attacker can strip (and then read --nats-pass).
  const requireTls = nats.requireTls === true || nats.servers.every((s) => s.startsWith('tls://'));
  const tls =
    requireTls || (nats.tls && (nats.tls.caFile || nats.tls.certFile))
      ? { caFile: nats.tls?.caFile, certFile: nats.tls?.certFile, keyFile: nats.tls?.keyFile }
      : undefined;
  return {
    servers: nats.servers,
    // In the order given: a process lists its own machine's server first (a NATS node on every machine), and
    // the others, and those the cluster tells of, only to fail over to.
    noRandomize: true,
    name,
    user: nats.user,
    pass: nats.pass,
    token: nats.token,
    authenticator: authenticator(nats),
    tls,
    // Keep trying for as long as the run lasts; links resend what a reconnect lost.
    reconnect: true,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    reconnectJitter: 250,
    pingInterval: 5000,
  };
}

/** Why a connection failed, in words a user can act on. */
function explain(err: unknown, servers: string[]): TransportError {
  const { code, message } = err as { code?: string; message?: string };
  const where = servers.join(', ');
  if (
    code === 'AUTHORIZATION_VIOLATION' ||
    code === 'BAD_AUTHENTICATION' ||
    code === 'BAD_CREDS' ||
    code === 'AUTHENTICATION_EXPIRED' ||
    /authori[sz]ation/i.test(message ?? '')
  ) {
    return new TransportError(
      `NATS at ${where} refused the credentials (check --nats-user/--nats-pass, --nats-token, --nats-creds or --nats-nkey): ${message}`,
      { permanent: true },
    );
  }
  if (code === 'SERVER_OPT_NA' && message === 'tls') {
    return new TransportError(
      `NATS at ${where} does not offer TLS, and TLS is required (--nats-require-tls or tls:// URLs): refusing to send credentials in the clear`,
      { permanent: true },
    );
  }
  if (code === 'CONNECTION_REFUSED')
    return new TransportError(`cannot reach NATS at ${where}: connection refused (is nats-server running?)`);
  if (/certificate|self[- ]signed|altnames/i.test(message ?? '')) {
    return new TransportError(
      `NATS at ${where}: the server's TLS certificate is not trusted (pass --nats-tls-ca with the CA that signed it): ${message}`,
      { permanent: true },
    );
  }
  return new TransportError(`cannot connect to NATS at ${where}: ${message ?? String(err)}`);
}

async function open(nats: NatsOptions, name: string): Promise<NatsConnection> {
  try {
    return await connect(connectionOptions(nats, name));
  } catch (err) {
    throw explain(err, nats.servers);
  }
}

/** Tells every link of a connection when it came back, so each can resync. */
function watchReconnects(
  nc: NatsConnection,
  links: () => Iterable<NatsLink>,
  onStatus?: (event: string, detail: string) => void,
): void {
  void (async () => {
    for await (const s of nc.status()) {
      onStatus?.(s.type, String(s.data ?? ''));
      if (s.type === 'reconnect') for (const link of links()) link.resync();
    }
  })().catch(() => {});
}

/**
 * Chunks stay far below a large max_payload: nats.js moves 256 KiB messages faster than multi-MB
 * ones (measured: ~510 vs ~390 MB/s on loopback), and a big frame then streams instead of stalling.
 */
const CHUNK_CAP = 256 * 1024;
const chunkBytesOf = (nc: NatsConnection) =>
  Math.max(1024, Math.min(CHUNK_CAP, (nc.info?.max_payload ?? 1024 * 1024) - HEADER_ROOM));

interface JoinRequest {
  worker: string;
  /** Chosen by the worker (a NUID), which has already subscribed to its `down` subject. */
  session: string;
  /** Its join pass (protocol/join-pass.ts), when it holds a secret; checked by the side that is joined. */
  pass?: string;
}

function sessionSubjects(prefix: string, session: string) {
  return { up: `${prefix}.s.${session}.up`, down: `${prefix}.s.${session}.down` };
}

function parseJoin(data: Uint8Array): JoinRequest | undefined {
  try {
    const j = JSON.parse(new TextDecoder().decode(data)) as Partial<JoinRequest>;
    return typeof j.worker === 'string' &&
      typeof j.session === 'string' &&
      /^[A-Za-z0-9]{8,64}$/.test(j.session)
      ? { worker: j.worker, session: j.session, ...(typeof j.pass === 'string' && { pass: j.pass }) }
      : undefined;
  } catch {
    return undefined;
  }
}

export interface NatsListenOptions {
  maxFrameBytes?: number;
  onStatus?: (event: string, detail: string) => void;
}

export async function listenNats(nats: NatsOptions, options: NatsListenOptions = {}): Promise<Listener> {
  const nc = await open(nats, 'gradfleet-coordinator');
  const sessions = new Map<string, NatsLink>();
  const broadcast = new BroadcastPublisher(nc, broadcastSubject(nats.subject), chunkBytesOf(nc));
  let onLink: ((link: Link) => void) | undefined;
  watchReconnects(nc, () => sessions.values(), options.onStatus);
  const join = nc.subscribe(`${nats.subject}.join`, {
    callback: (err, msg) => {
      if (err || !onLink) return;
      const request = parseJoin(msg.data);
      // nats.js replies to `_INBOX.<client nuid>.<request>`: the prefix names the joining client's
      // connection.
      const source = msg.reply?.split('.').slice(0, 2).join('.');
      if (!request || sessions.has(request.session)) {
        msg.respond(
          new TextEncoder().encode(
            JSON.stringify({ error: request ? 'session taken' : 'malformed join request' }),
          ),
        );
        return;
      }
      const subjects = sessionSubjects(nats.subject, request.session);
      const link: NatsLink = new NatsLink({
        nc,
        sendSubject: subjects.down,
        recvSubject: subjects.up,
        peer: `nats ${request.worker.slice(0, 64)} (session ${request.session.slice(-8)})`,
        chunkBytes: chunkBytesOf(nc),
        maxFrameBytes: options.maxFrameBytes,
        heartbeatMs: nats.heartbeatMs,
        deadAfterMs: nats.deadAfterMs,
        onEnd: () => sessions.delete(request.session),
        broadcast,
        source,
        joinPass: request.pass,
      });
      sessions.set(request.session, link);
      onLink(link);
      msg.respond(new TextEncoder().encode(JSON.stringify({ session: request.session })));
    },
  });
  await nc.flush();
  return {
    url: `nats://${nats.servers.map((s) => s.replace(/^\w+:\/\//, '')).join(',')}/${nats.subject}`,
    onLink: (handler) => {
      onLink = handler;
    },
    close: async () => {
      join.unsubscribe();
      for (const link of [...sessions.values()]) link.close('coordinator closing');
      await nc.drain().catch(() => nc.close());
    },
  };
}

/**
 * A worker's link: its own connection; it subscribes to its session's `down` subject first, then
 * asks to join, so the coordinator's first frame finds the subscription in place.
 */
export async function connectNats(
  nats: NatsOptions,
  workerId: string,
  options: {
    maxFrameBytes?: number;
    onStatus?: (event: string, detail: string) => void;
    /** Sent with the join request (protocol/join-pass.ts), when the worker holds a secret. */
    joinPass?: string;
  } = {},
): Promise<Link> {
  const nc = await open(nats, `gradfleet-worker-${workerId}`);
  const session = nuid.next();
  const subjects = sessionSubjects(nats.subject, session);
  const link = new NatsLink({
    nc,
    sendSubject: subjects.up,
    recvSubject: subjects.down,
    peer: `nats coordinator (session ${session.slice(-8)})`,
    chunkBytes: chunkBytesOf(nc),
    maxFrameBytes: options.maxFrameBytes,
    heartbeatMs: nats.heartbeatMs,
    deadAfterMs: nats.deadAfterMs,
    onEnd: () => void nc.drain().catch(() => nc.close()),
    broadcastSubject: broadcastSubject(nats.subject),
  });
  watchReconnects(nc, () => [link], options.onStatus);
  try {
    await nc.flush();
    const reply = await nc.request(
      `${nats.subject}.join`,
      new TextEncoder().encode(
        JSON.stringify({ worker: workerId, session, pass: options.joinPass } satisfies JoinRequest),
      ),
      { timeout: 5000 },
    );
    const refusal = (JSON.parse(new TextDecoder().decode(reply.data)) as { error?: string }).error;
    if (refusal) throw new Error(`the coordinator refused: ${refusal}`);
  } catch (err) {
    link.close('join failed');
    const code = (err as { code?: string }).code;
    if (code === '503')
      throw new TransportError(
        `no coordinator answers on ${nats.subject}.join at ${nats.servers.join(', ')} (not started yet, or another --nats-subject)`,
      );
    throw new TransportError(`joining through ${nats.subject}.join failed: ${(err as Error).message}`);
  }
  return link;
}
