/**
 * What the CLI needs from a transport: its flags, a listener for the coordinator, a connector for workers.
 */
import type { Command } from 'commander';
import type { Logger } from '../../common/logger.js';
import type { Link, Listener } from '../../protocol/transport.js';
import type { TlsListenFlags, TransportFlags } from './flags.js';

export interface Connector {
  /** For logs: where the worker connects. */
  where: string;
  connect(): Promise<Link>;
}

export interface CliTransport {
  /** One line for --transport's help. */
  summary: string;
  /** Adds this transport's own flags (every command that speaks a transport gets each transport's). */
  addOptions(cmd: Command): Command;
  listener(
    f: TransportFlags & TlsListenFlags,
    host: string,
    port: number,
    log: Logger,
  ): (maxFrameBytes: number) => Promise<Listener>;
  /** `joinPass`: makes a fresh join pass for each connection (protocol/join-pass.ts), when there is a secret. */
  connector(
    f: TransportFlags & { connect?: string; tlsCa?: string },
    workerId: string,
    log: Logger,
    joinPass?: () => string,
  ): Connector;
  /**
   * Flags (and environment, for secrets) that make a local worker join a coordinator listening at
   * `listenerUrl`.
   */
  joinArgs(f: TransportFlags, listenerUrl: string): { args: string[]; env: Record<string, string> };
  /**
   * Where a shard reducer serves workers: its listener, and the address (`serves`) that workers are
   * given in the shard map. ws: its own --host/--port (or --advertise); NATS: a subject of its own.
   */
  serveShard(
    f: TransportFlags & TlsListenFlags,
    shard: { host: string; port: number; shardId: string; advertise?: string },
    log: Logger,
  ): (maxFrameBytes: number) => Promise<{ listener: Listener; serves: string }>;
  /** A worker's way to a shard reducer at `serves` (from the shard map). */
  reachShard(
    f: TransportFlags & { tlsCa?: string },
    serves: string,
    workerId: string,
    log: Logger,
    joinPass?: () => string,
  ): Connector;
}
