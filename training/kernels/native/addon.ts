/**
 * Loads gradfleet's optional oneDNN addon (built by `npm ci` when build-essential and libdnnl-dev
 * are present; see scripts/build-native.mjs). Never throws: a missing or broken addon is a reason,
 * which backend selection logs when it skips the native backend.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Byte offsets into the heap; −1 where a tensor is optional and absent. */
type Offsets = number[];

/** The addon's functions (training/kernels/native/src/addon.cc documents each argument list). */
export interface NativeAddon {
  convForward(heap: ArrayBuffer, tensors: Offsets, shape: number[], relu: boolean): void;
  convBackwardData(heap: ArrayBuffer, tensors: Offsets, shape: number[]): void;
  convBackwardWeights(heap: ArrayBuffer, tensors: Offsets, shape: number[]): void;
  matMul(heap: ArrayBuffer, tensors: Offsets, shape: number[], flags: number[]): void;
  batchNormForward(heap: ArrayBuffer, tensors: Offsets, shape: number[], relu: boolean): void;
  batchNormBackward(heap: ArrayBuffer, tensors: Offsets, shape: number[], relu: boolean): void;
  batchNormInference(heap: ArrayBuffer, tensors: Offsets, shape: number[], relu: boolean): void;
  maxPoolForward(heap: ArrayBuffer, tensors: Offsets, shape: number[]): void;
  maxPoolBackward(heap: ArrayBuffer, tensors: Offsets, shape: number[]): void;
  scaleInPlace(a: Float32Array, k: number): void;
  divideInPlace(a: Float32Array, d: number): void;
  addInto(a: Float32Array, b: Float32Array): void;
  firstOutside(a: Float32Array, limit: number): number;
  adamUpdate(
    w: Float32Array,
    g: Float32Array,
    m: Float32Array,
    v: Float32Array,
    scalars: [number, number, number, number],
  ): void;
  setThreads(threads: number): void;
  info(): { onednn: string; isa: number; threads: number; scratchBytes: number };
}

export type AddonLoad = { addon: NativeAddon; path: string } | { addon: null; reason: string };

/** Points the loader elsewhere (tests use a missing path to exercise the fallback). */
export const ADDON_PATH_ENV = 'GRADFLEET_NATIVE_ADDON';

/** Written by the install script when it could not build the addon: the reason, for the log. */
const BUILD_FAILURE_NOTE = 'gradfleet-native-not-built.txt';

/**
 * The package root: the nearest folder above this module with a package.json (src and dist differ in depth).
 */
function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('gradfleet: no package.json above the native loader');
    dir = up;
  }
  return dir;
}

function notBuiltReason(root: string, path: string): string {
  const note = join(root, 'build', BUILD_FAILURE_NOTE);
  const why = existsSync(note)
    ? readFileSync(note, 'utf8').trim()
    : 'npm ci builds it when build-essential and libdnnl-dev are installed';
  return `addon not built (${path} missing: ${why})`;
}

let cached: AddonLoad | undefined;

/** The addon, loaded once per process (or the reason it is not there). */
export function loadNativeAddon(): AddonLoad {
  cached ??= loadAddon();
  return cached;
}

function loadAddon(): AddonLoad {
  const root = packageRoot();
  const path = process.env[ADDON_PATH_ENV] || join(root, 'build', 'Release', 'gradfleet_native.node');
  if (!existsSync(path)) return { addon: null, reason: notBuiltReason(root, path) };
  try {
    return { addon: createRequire(import.meta.url)(path) as NativeAddon, path };
  } catch (err) {
    return {
      addon: null,
      reason: `addon failed to load (${path}): ${(err as Error).message.split('\n')[0]}`,
    };
  }
}
