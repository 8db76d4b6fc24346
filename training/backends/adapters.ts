/**
 * The WebGPU adapters this machine has, through Dawn (the optional `webgpu` package): loading it,
 * listing adapters, telling a software adapter (Mesa llvmpipe/lavapipe, SwiftShader) from a GPU,
 * and picking the N-th GPU. Never throws for a missing or broken Dawn: that is a reason, which
 * backend selection logs when it skips the webgpu backend.
 */
import type { GpuAdapterInfo } from '../../protocol/gpu-adapter.js';

export type { GpuAdapterInfo } from '../../protocol/gpu-adapter.js';

/** The parts of Dawn's `GPU` object gradfleet uses (the `webgpu` package ships no types for Node). */
interface DawnGpu {
  requestAdapter(options?: {
    powerPreference?: 'high-performance' | 'low-power';
  }): Promise<DawnAdapter | null>;
}

interface DawnAdapter {
  readonly info: {
    vendor: string;
    architecture: string;
    device: string;
    description: string;
    isFallbackAdapter?: boolean;
  };
  readonly features: ReadonlySet<string>;
  readonly limits: Record<string, number>;
  requestDevice(descriptor?: object): Promise<{ destroy(): void }>;
}

interface DawnModule {
  create(flags: string[]): DawnGpu;
  globals: Record<string, unknown>;
}

export type DawnLoad = { dawn: DawnModule } | { dawn: null; reason: string };

let loaded: DawnLoad | undefined;

/**
 * Dawn's Node binding, with WebGPU's globals (GPUBufferUsage, …) installed, as the tfjs backend needs them.
 */
export async function loadDawn(): Promise<DawnLoad> {
  loaded ??= await importDawn();
  return loaded;
}

async function importDawn(): Promise<DawnLoad> {
  try {
    const dawn = (await import('webgpu')) as unknown as DawnModule;
    Object.assign(globalThis, dawn.globals);
    return { dawn };
  } catch (err) {
    const message = (err as Error).message.split('\n')[0];
    const missing = (err as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND';
    return {
      dawn: null,
      reason: missing
        ? 'the optional package webgpu is not installed'
        : `Dawn (webgpu) failed to load: ${message}`,
    };
  }
}

const SOFTWARE_NAMES = /llvmpipe|lavapipe|swiftshader|software|softpipe/i;

function describeAdapter(adapter: DawnAdapter): GpuAdapterInfo {
  const {
    vendor = '',
    architecture = '',
    device = '',
    description = '',
    isFallbackAdapter = false,
  } = adapter.info;
  const software = isFallbackAdapter || SOFTWARE_NAMES.test(`${architecture} ${device} ${description}`);
  return { vendor, architecture, device, description, software };
}

/** One line for logs and errors: "NVIDIA H200 (nvidia, hopper)". */
export function adapterLabel(a: GpuAdapterInfo): string {
  const name = a.description || a.device || 'unnamed adapter';
  const detail = [a.vendor, a.architecture].filter(Boolean).join(', ');
  return `${name}${detail ? ` (${detail})` : ''}${a.software && a.architecture !== 'software' ? ' [software]' : ''}`;
}

/**
 * Every adapter's name as Dawn lists them. dawn.node has no enumeration API: it lists the adapters
 * in the error for an adapter name that matches none, and selects adapters by name only.
 */
async function adapterNames(dawn: DawnModule): Promise<string[]> {
  try {
    await dawn.create(['adapter=gradfleet-lists-adapters-by-asking-for-none']).requestAdapter();
  } catch (err) {
    return [...String((err as Error).message ?? err).matchAll(/^ \* backend: '[^']*', name: '(.*)'$/gm)].map(
      (m) => m[1],
    );
  }
  return [];
}

export interface AdapterChoice {
  gpu: DawnGpu;
  adapter: DawnAdapter;
  info: GpuAdapterInfo;
}

/** Every adapter Dawn sees, described (one request per distinct name). */
export async function listAdapters(dawn: DawnModule): Promise<GpuAdapterInfo[]> {
  const names = await adapterNames(dawn);
  const infos = new Map<string, GpuAdapterInfo>();
  for (const name of new Set(names)) {
    const adapter = await dawn
      .create([`adapter=${name}`])
      .requestAdapter()
      .catch(() => null);
    if (adapter) infos.set(name, describeAdapter(adapter));
  }
  return names.flatMap((n) => (infos.has(n) ? [infos.get(n)!] : []));
}

export class AdapterUnavailableError extends Error {
  override name = 'AdapterUnavailableError';
}

/**
 * The adapter to compute on: the default (high-performance) one, or with `gpuIndex` the N-th
 * hardware adapter. Throws AdapterUnavailableError with the reason (and the adapters there are).
 */
export async function chooseAdapter(dawn: DawnModule, gpuIndex?: number): Promise<AdapterChoice> {
  if (gpuIndex === undefined) {
    const gpu = dawn.create([]);
    const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' }).catch((err: Error) => {
      throw new AdapterUnavailableError(`no WebGPU adapter: ${err.message.split('\n')[0]}`);
    });
    if (!adapter)
      throw new AdapterUnavailableError(
        "no WebGPU adapter (is a Vulkan driver installed? Debian: mesa-vulkan-drivers for the software one, the GPU vendor's driver otherwise)",
      );
    return { gpu, adapter, info: describeAdapter(adapter) };
  }
  const names = await adapterNames(dawn);
  const all = await listAdapters(dawn);
  const hardware = all.map((info, i) => ({ info, name: names[i] })).filter((a) => !a.info.software);
  const seen = all.length ? all.map((a, i) => `${i}: ${adapterLabel(a)}`).join('; ') : 'none';
  const picked = hardware[gpuIndex];
  if (!picked)
    throw new AdapterUnavailableError(
      `--gpu ${gpuIndex}: there are ${hardware.length} hardware adapters (adapters seen: ${seen})`,
    );
  if (names.filter((n) => n === picked.name).length > 1) {
    // Dawn picks the first adapter whose name matches: of several equal GPUs only the first is reachable.
    throw new AdapterUnavailableError(
      `--gpu ${gpuIndex}: ${picked.name} is the name of several adapters, and Dawn selects adapters by name only; ` +
        'give each worker one GPU through its container instead (NVIDIA_VISIBLE_DEVICES) and use --gpu 0',
    );
  }
  const gpu = dawn.create([`adapter=${picked.name}`]);
  const adapter = await gpu.requestAdapter();
  if (!adapter) throw new AdapterUnavailableError(`--gpu ${gpuIndex}: ${picked.name} could not be opened`);
  return { gpu, adapter, info: describeAdapter(adapter) };
}
