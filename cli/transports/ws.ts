/** WebSockets, the embedded default: the coordinator listens on --host/--port; wss:// with --tls-*. */
import { type WsServerTls, connectWs, listenWs } from '../../protocol/ws-transport.js';
import { TransportError } from '../../protocol/transport.js';
import { readFlagFile } from '../options.js';
import type { TlsListenFlags } from './flags.js';
import type { CliTransport } from './transport.js';
import { UsageError } from '../../common/errors.js';

function serverTlsOf(f: TlsListenFlags): WsServerTls | undefined {
  if (f.tlsCert === undefined && f.tlsKey === undefined) return undefined;
  if (f.tlsCert === undefined || f.tlsKey === undefined)
    throw new UsageError('wss:// needs both --tls-cert and --tls-key');
  return { cert: readFlagFile('--tls-cert', f.tlsCert), key: readFlagFile('--tls-key', f.tlsKey) };
}

/** What to do about a port this process cannot listen on, as the metrics port says it. */
function listenHint(message: string, host: string, port: number): string {
  if (/EADDRINUSE/.test(message))
    return ` (port ${port} is already in use, by another coordinator or train?: pick another with --port, 0 for any free one)`;
  if (/EACCES/.test(message))
    return ` (ports below 1024 need root: pick another with --port, e.g. 7070, or 0 for any free one)`;
  if (/EADDRNOTAVAIL|ENOTFOUND/.test(message))
    return ` (--host ${host} is no address of this machine: use 127.0.0.1, 0.0.0.0, or one of its addresses)`;
  return '';
}

/** Where a worker's connection is refused, nothing listens there. */
const connectHint = (message: string) =>
  /ECONNREFUSED/.test(message)
    ? ' (nothing listens there: is the coordinator running, and does --connect name the port it logged as "coordinator listening on"?)'
    : '';

export const wsTransport: CliTransport = {
  summary: 'ws: the coordinator listens on --host/--port',
  // --tls-cert/--tls-key (coordinator) and --tls-ca (worker) belong to one command each: see
  // addTlsListenOptions/addTlsConnectOptions.
  addOptions: (cmd) => cmd,
  listener: (f, host, port) => {
    const tls = serverTlsOf(f);
    return (maxFrameBytes) =>
      listenWs(host, port, { maxFrameBytes, tls }).catch((err: Error) => {
        const hint = listenHint(err.message, host, port);
        throw hint ? new TransportError(`${err.message}${hint}`) : err;
      });
  },
  connector: (f, _workerId, _log, joinPass) => {
    if (!f.connect) throw new UsageError('--connect ws://HOST:PORT is required (or --transport nats)');
    if (!/^wss?:\/\//.test(f.connect))
      throw new UsageError(`--connect ${f.connect}: expected ws://HOST:PORT or wss://HOST:PORT`);
    const url = f.connect;
    const ca = f.tlsCa === undefined ? undefined : readFlagFile('--tls-ca', f.tlsCa);
    return {
      where: url,
      connect: () =>
        connectWs(url, { ca, joinPass: joinPass?.() }).catch((err: Error) => {
          const hint = connectHint(err.message);
          throw hint ? new TransportError(`${err.message}${hint}`) : err;
        }),
    };
  },
  joinArgs: (_f, listenerUrl) => ({ args: ['--connect', listenerUrl], env: {} }),
  serveShard: (f, { host, port, advertise }) => {
    const tls = serverTlsOf(f);
    return async (maxFrameBytes) => {
      const listener = await listenWs(host, port, { maxFrameBytes, tls });
      return { listener, serves: advertise ?? listener.url };
    };
  },
  reachShard: (f, serves, workerId, log, joinPass) => {
    if (!/^wss?:\/\//.test(serves))
      throw new Error(
        `the shard map names ${serves}, which is no ws:// address: do the coordinator and this worker use the same --transport?`,
      );
    return wsTransport.connector({ ...f, connect: serves }, workerId, log, joinPass);
  },
};
