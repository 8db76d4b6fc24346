/**
 * Who may join, and how fast: the admission limits of whatever serves workers (`coordinator`, `train`,
 * `shard`), with the same flags and defaults everywhere.
 */
import type { Command } from 'commander';
import { type AdmissionLimits, DEFAULT_ADMISSION } from '../protocol/admission.js';
import { positiveInt } from './options.js';

export interface AdmissionFlags {
  maxWorkers: number;
  maxConnections: number;
  maxJoinsPerS: number;
  maxJoinsPerSourcePerS: number;
  maxPreauthKb: number;
}

export function addAdmissionOptions(cmd: Command): Command {
  return cmd
    .option(
      '--max-workers <n>',
      'admit at most this many workers; more are refused until one leaves',
      positiveInt,
      DEFAULT_ADMISSION.maxWorkers,
    )
    .option(
      '--max-connections <n>',
      'connections open at once, handshakes included',
      positiveInt,
      DEFAULT_ADMISSION.maxConnections,
    )
    .option(
      '--max-joins-per-s <n>',
      'new connections per second (bursts of up to this many)',
      positiveInt,
      DEFAULT_ADMISSION.joinsPerSecond,
    )
    .option(
      '--max-joins-per-source-per-s <n>',
      'new connections per second from one address (NATS: one client)',
      positiveInt,
      DEFAULT_ADMISSION.joinsPerSourcePerSecond,
    )
    .option(
      '--max-preauth-kb <n>',
      'KiB that all connections not yet authenticated may have sent, together (each at most 16); past it they are dropped',
      positiveInt,
      DEFAULT_ADMISSION.preAuthBytes / 1024,
    );
}

export function admissionLimitsOf(f: AdmissionFlags): AdmissionLimits {
  return {
    maxWorkers: f.maxWorkers,
    maxConnections: f.maxConnections,
    joinsPerSecond: f.maxJoinsPerS,
    joinsPerSourcePerSecond: f.maxJoinsPerSourcePerS,
    preAuthBytes: f.maxPreauthKb * 1024,
  };
}
