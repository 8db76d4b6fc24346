/**
 * Which data set specs a worker loads from its own disk. The spec comes from the coordinator's
 * welcome, so without a policy any coordinator (or anyone who can forge its welcome) could make the
 * worker read, and gunzip, any file it can open. Only the packaged MNIST (`mnist:*`) is always
 * allowed; a file must lie, after resolving links, inside one of the worker's --data-dir folders.
 * A refused spec is not fatal: the worker asks for the data to be streamed instead.
 */
import { resolvesInside } from '../common/paths.js';

export type DataSpecVerdict = { ok: true } | { ok: false; reason: string };

const MNIST_SCHEME = 'mnist:';

export function checkDataSpec(spec: string, dataDirs: readonly string[]): DataSpecVerdict {
  if (spec.startsWith(MNIST_SCHEME)) return { ok: true };
  if (dataDirs.length === 0)
    return {
      ok: false,
      reason: `${spec} is a local file and this worker loads only mnist:* (allow a folder with --data-dir)`,
    };
  if (dataDirs.some((dir) => resolvesInside(spec, dir))) return { ok: true };
  return { ok: false, reason: `${spec} is not inside --data-dir ${dataDirs.join(', ')}` };
}
