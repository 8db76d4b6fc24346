/**
 * Every backend gradfleet can run on, by the name `--backend` takes, and the order `auto` tries
 * them in: GPUs first (native TensorFlow's, then WebGPU on a hardware adapter), then native CPU
 * code, then wasm. The pure-JS cpu backend and WebGPU's software adapters are never automatic.
 */
import type { BackendCandidate, BackendName } from './backend.js';
import { cpu } from './cpu.js';
import { native } from './native.js';
import { tensorflowCpu, tensorflowGpu } from './tensorflow.js';
import { wasm } from './wasm.js';
import { webgpu, webgpuHardware } from './webgpu.js';

export const BACKEND_CHOICES = ['auto', 'tensorflow', 'webgpu', 'native', 'wasm', 'cpu'] as const;
export type BackendChoice = (typeof BACKEND_CHOICES)[number];

const AUTO_ORDER: readonly BackendCandidate[] = [tensorflowGpu, webgpuHardware, tensorflowCpu, native, wasm];

const byName: Record<BackendName, readonly BackendCandidate[]> = {
  tensorflow: [tensorflowGpu, tensorflowCpu],
  webgpu: [webgpu],
  native: [native],
  wasm: [wasm],
  cpu: [cpu],
};

export const candidatesFor = (choice: BackendChoice): readonly BackendCandidate[] =>
  choice === 'auto' ? AUTO_ORDER : byName[choice];

/** What to do instead, in the error for a backend asked for by name that cannot load. */
export const REMEDY: Record<BackendName, string> = {
  tensorflow:
    'Install @tensorflow/tfjs-node-gpu or @tensorflow/tfjs-node 4.22.0 next to gradfleet, or use --backend wasm.',
  webgpu:
    "Install a Vulkan driver (scripts/install-test-deps.sh installs Mesa's software one) and the optional packages webgpu and @tensorflow/tfjs-backend-webgpu (npm ci), or use --backend wasm.",
  native:
    'Install build-essential and libdnnl-dev (scripts/install-test-deps.sh does) and run npm ci again, or use --backend wasm.',
  wasm: 'Reinstall gradfleet (npm ci).',
  cpu: 'Reinstall gradfleet (npm ci).',
};
