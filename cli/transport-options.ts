/**
 * How processes reach each other: WebSockets (the embedded default) or NATS, with the connection
 * options NATS users expect. Shared by `train`, `coordinator` and `worker`.
 */
import { Command, Option } from 'commander';
import type { Logger } from '../common/logger.js';
import { type NatsOptions, connectNats, listenNats } from '../protocol/nats-transport.js';
import type { Link, Listener } from '../protocol/transport.js';
import { type WsServerTls, connectWs, listenWs } from '../protocol/ws-transport.js';
import { oneOf, positiveInt, readFlagFile } from './options.js';

export const TRANSPORTS = ['ws', 'nats'] as const;
export type TransportName = (typeof TRANSPORTS)[number];

export interface TransportFlags {
  transport: TransportName;
  natsUrl: string;
  natsSubject: string;
  natsUser?: string;
  natsPass?: string;
  natsToken?: string;
  natsCreds?: string;
  natsNkey?: string;
  natsTlsCa?: string;
  natsTlsCert?: string;
  natsTlsKey?: string;
  natsRequireTls?: boolean;
  natsDeadAfter: number;
}

/** Secrets come from the environment as well as flags, so they stay out of `ps` and shell history. */
const SECRET_ENV = { natsPass: 'GRADFLEET_NATS_PASS', natsToken: 'GRADFLEET_NATS_TOKEN' } as const;

export function addTransportOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--transport <name>', 'ws: the coordinator listens on --host/--port; nats: everyone meets on a NATS server').argParser(oneOf(TRANSPORTS)).default('ws'))
    .option('--nats-url <urls>', 'NATS server(s), comma-separated (nats://host:4222, tls://host:4222)', 'nats://127.0.0.1:4222')
    .option('--nats-subject <prefix>', 'subject prefix of the run (coordinator and workers must agree)', 'gradfleet')
    .option('--nats-user <name>', 'NATS user')
    .addOption(new Option('--nats-pass <password>', 'NATS password').env(SECRET_ENV.natsPass))
    .addOption(new Option('--nats-token <token>', 'NATS token').env(SECRET_ENV.natsToken))
    .option('--nats-creds <file>', 'NATS credentials file (JWT + NKey seed)')
    .option('--nats-nkey <file>', 'NATS NKey seed file')
    .option('--nats-tls-ca <file>', 'CA that signed the NATS server certificate')
    .option('--nats-tls-cert <file>', 'client certificate for NATS (mutual TLS)')
    .option('--nats-tls-key <file>', 'client key for NATS (mutual TLS)')
    .option('--nats-require-tls', 'connect only over TLS (implied by tls:// URLs): credentials never cross a plaintext connection')
    .option('--nats-dead-after <s>', 'a NATS peer silent this long is treated as gone', positiveInt, 30);
}

export function natsOptionsOf(f: TransportFlags): NatsOptions {
  const servers = f.natsUrl.split(',').map((s) => s.trim()).filter(Boolean);
  if (servers.length === 0) throw new Error('--nats-url needs at least one server');
  return {
    servers, subject: f.natsSubject, user: f.natsUser, pass: f.natsPass, token: f.natsToken, credsFile: f.natsCreds, nkeySeedFile: f.natsNkey,
    tls: { caFile: f.natsTlsCa, certFile: f.natsTlsCert, keyFile: f.natsTlsKey }, requireTls: f.natsRequireTls, deadAfterMs: f.natsDeadAfter * 1000,
  };
}

/** wss:// for `gradfleet coordinator`. */
export interface TlsListenFlags {
  tlsCert?: string;
  tlsKey?: string;
}

export function addTlsListenOptions(cmd: Command): Command {
  return cmd
    .option('--tls-cert <file>', 'serve wss:// with this certificate (PEM; chain included); needs --tls-key')
    .option('--tls-key <file>', 'private key of --tls-cert (PEM)');
}

/** Workers verify a wss:// coordinator against this CA. */
export function addTlsConnectOptions(cmd: Command): Command {
  return cmd.option('--tls-ca <file>', 'trust this CA (PEM) for a wss:// coordinator, e.g. one with a self-signed certificate');
}

function serverTlsOf(f: TlsListenFlags): WsServerTls | undefined {
  if (f.tlsCert === undefined && f.tlsKey === undefined) return undefined;
  if (f.tlsCert === undefined || f.tlsKey === undefined) throw new Error('wss:// needs both --tls-cert and --tls-key');
  return { cert: readFlagFile('--tls-cert', f.tlsCert), key: readFlagFile('--tls-key', f.tlsKey) };
}

export function listenerFor(f: TransportFlags & TlsListenFlags, host: string, port: number, log: Logger): (maxFrameBytes: number) => Promise<Listener> {
  const tls = serverTlsOf(f);
  if (tls && f.transport !== 'ws') throw new Error('--tls-cert/--tls-key are for --transport ws; NATS has its own TLS (--nats-tls-*)');
  if (f.transport === 'ws') return (maxFrameBytes) => listenWs(host, port, { maxFrameBytes, tls });
  const nats = natsOptionsOf(f);
  return (maxFrameBytes) => listenNats(nats, { maxFrameBytes, onStatus: natsStatusLogger(log) });
}

export function connectorFor(f: TransportFlags & { connect?: string; tlsCa?: string }, workerId: string, log: Logger): { where: string; connect: () => Promise<Link> } {
  if (f.transport === 'ws') {
    if (!f.connect) throw new Error('--connect ws://HOST:PORT is required (or --transport nats)');
    if (!/^wss?:\/\//.test(f.connect)) throw new Error(`--connect ${f.connect}: expected ws://HOST:PORT or wss://HOST:PORT`);
    const ca = f.tlsCa === undefined ? undefined : readFlagFile('--tls-ca', f.tlsCa);
    return { where: f.connect, connect: () => connectWs(f.connect!, { ca }) };
  }
  const nats = natsOptionsOf(f);
  return { where: `${nats.servers.join(',')} (${nats.subject})`, connect: () => connectNats(nats, workerId, { onStatus: natsStatusLogger(log) }) };
}

/** The flags that make a local worker join the same way (secrets travel in its environment). */
export function workerTransportArgs(f: TransportFlags, wsUrl: string): { args: string[]; env: Record<string, string> } {
  if (f.transport === 'ws') return { args: ['--connect', wsUrl], env: {} };
  const args = ['--transport', 'nats', '--nats-url', f.natsUrl, '--nats-subject', f.natsSubject, '--nats-dead-after', String(f.natsDeadAfter)];
  if (f.natsRequireTls) args.push('--nats-require-tls');
  const optional: Array<[keyof TransportFlags, string]> = [
    ['natsUser', '--nats-user'], ['natsCreds', '--nats-creds'], ['natsNkey', '--nats-nkey'], ['natsTlsCa', '--nats-tls-ca'], ['natsTlsCert', '--nats-tls-cert'], ['natsTlsKey', '--nats-tls-key'],
  ];
  for (const [key, flag] of optional) if (f[key] !== undefined) args.push(flag, String(f[key]));
  const env: Record<string, string> = {};
  for (const [key, name] of Object.entries(SECRET_ENV)) {
    const value = f[key as keyof typeof SECRET_ENV];
    if (value !== undefined) env[name] = value;
  }
  return { args, env };
}

function natsStatusLogger(log: Logger): (event: string, detail: string) => void {
  return (event, detail) => {
    if (event === 'disconnect') log.warn({ server: detail }, `NATS connection lost (${detail}): reconnecting`);
    else if (event === 'reconnect') log.info({ server: detail }, `NATS reconnected to ${detail}: resending what the gap lost`);
    else if (event === 'error') log.warn({ detail }, `NATS: ${detail}`);
  };
}
