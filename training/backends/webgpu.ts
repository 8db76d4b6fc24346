/**
 * tfjs's WebGPU backend (@tensorflow/tfjs-backend-webgpu, optional) on Dawn (the optional `webgpu`
 * package). gradfleet registers the backend's factory itself, so that it decides which adapter the
 * device comes from (`--gpu N`, and `auto` refusing software adapters) and can destroy that device
 * on shutdown: Node does not exit while Dawn's GPU object is referenced.
 */
import * as tf from '@tensorflow/tfjs-core';
import {
  type AdapterChoice,
  AdapterUnavailableError,
  type GpuAdapterInfo,
  adapterLabel,
  chooseAdapter,
  loadDawn,
} from './adapters.js';
import { type BackendCandidate, type BackendOptions, BackendUnavailableError } from './backend.js';
import { probeAdapters } from './webgpu-probe.js';

const WEBGPU_PACKAGE = '@tensorflow/tfjs-backend-webgpu';

interface WebGpuBackendModule {
  WebGPUBackend: new (device: unknown, adapterInfo?: unknown) => tf.KernelBackend;
}

interface Active {
  gpuIndex: number | undefined;
  choice: AdapterChoice;
  device: { destroy(): void };
}

let active: Active | undefined;

type NavigatorHolder = { navigator?: { gpu?: unknown } };

/** The tfjs backend looks for `navigator.gpu` (Node 20 has no navigator; Node 21+ has one without gpu). */
function exposeGpu(gpu: unknown): void {
  const holder = globalThis as NavigatorHolder;
  if (!holder.navigator)
    Object.defineProperty(globalThis, 'navigator', { value: {}, configurable: true, writable: true });
  Object.defineProperty(holder.navigator, 'gpu', { value: gpu, configurable: true, writable: true });
}

function hideGpu(): void {
  const nav = (globalThis as NavigatorHolder).navigator;
  if (nav && 'gpu' in nav) delete nav.gpu;
}

/**
 * The device tfjs's own factory would ask for: timestamp queries where there are (for profiles), the
 * adapter's limits.
 */
function deviceDescriptor(adapter: AdapterChoice['adapter']): object {
  const limits = adapter.limits;
  return {
    requiredFeatures: ['timestamp-query', 'bgra8unorm-storage'].filter((f) => adapter.features.has(f)),
    requiredLimits: Object.fromEntries(
      [
        'maxComputeWorkgroupStorageSize',
        'maxComputeWorkgroupsPerDimension',
        'maxStorageBufferBindingSize',
        'maxBufferSize',
        'maxComputeWorkgroupSizeX',
        'maxComputeInvocationsPerWorkgroup',
      ].map((k) => [k, limits[k]]),
    ),
  };
}

async function open(gpuIndex: number | undefined): Promise<Active> {
  const loaded = await loadDawn();
  if (!loaded.dawn) throw new BackendUnavailableError(loaded.reason);
  let choice: AdapterChoice;
  try {
    choice = await chooseAdapter(loaded.dawn, gpuIndex);
  } catch (err) {
    if (err instanceof AdapterUnavailableError) throw new BackendUnavailableError(err.message);
    throw err;
  }
  exposeGpu(choice.gpu);
  let module: WebGpuBackendModule;
  try {
    // Only now: the package checks for navigator.gpu as it is imported.
    module = (await import(WEBGPU_PACKAGE)) as unknown as WebGpuBackendModule;
  } catch (err) {
    hideGpu();
    throw new BackendUnavailableError(
      `${WEBGPU_PACKAGE} failed to load: ${(err as Error).message.split('\n')[0]}`,
    );
  }
  const device = await choice.adapter.requestDevice(deviceDescriptor(choice.adapter));
  // The package registered a factory of its own (default adapter, a device nobody can destroy): replace it.
  if (tf.findBackendFactory('webgpu')) tf.removeBackend('webgpu');
  tf.registerBackend('webgpu', () => new module.WebGPUBackend(device, choice.adapter.info));
  return { gpuIndex, choice, device };
}

/** Destroys the device and drops every reference to Dawn's GPU object, so the process can exit. */
function releaseWebGpu(): void {
  if (!active) return;
  if (tf.findBackendFactory('webgpu')) tf.removeBackend('webgpu');
  active.device.destroy();
  hideGpu();
  active = undefined;
}

const softwareOnly = (info: GpuAdapterInfo) =>
  new BackendUnavailableError(
    `${adapterLabel(info)} is a software adapter (slower than wasm): used only with --backend webgpu`,
  );

/**
 * `auto`'s question, asked of a child process's Dawn (webgpu-probe.ts), so that Dawn's own warnings stay off
 * the terminal: would the adapter be a hardware one? Throws BackendUnavailableError with the reason if not.
 */
async function expectHardware(gpuIndex: number | undefined): Promise<void> {
  const probe = await probeAdapters();
  if ('reason' in probe) throw new BackendUnavailableError(probe.reason);
  let choice: AdapterChoice;
  try {
    choice = await chooseAdapter(probe.dawn, gpuIndex);
  } catch (err) {
    if (err instanceof AdapterUnavailableError) throw new BackendUnavailableError(err.message);
    throw err;
  }
  if (choice.info.software) throw softwareOnly(choice.info);
}

async function activate(options: BackendOptions, allowSoftware: boolean): Promise<GpuAdapterInfo> {
  if (active && active.gpuIndex !== options.gpu) releaseWebGpu();
  if (!active && !allowSoftware) await expectHardware(options.gpu);
  active ??= await open(options.gpu);
  const { info } = active.choice;
  if (info.software && !allowSoftware) {
    releaseWebGpu();
    throw softwareOnly(info);
  }
  if (!(await tf.setBackend('webgpu'))) {
    releaseWebGpu();
    throw new BackendUnavailableError(`the webgpu backend failed to initialise on ${adapterLabel(info)}`);
  }
  return info;
}

function webgpuCandidate(allowSoftware: boolean): BackendCandidate {
  return {
    name: 'webgpu',
    package: WEBGPU_PACKAGE,
    async load(options) {
      const adapter = await activate(options, allowSoftware);
      return {
        name: 'webgpu',
        package: WEBGPU_PACKAGE,
        gpu: !adapter.software,
        adapter,
        trainingKernels: [],
      };
    },
    release: releaseWebGpu,
  };
}

/** `--backend webgpu`: whatever adapter there is, a software one included (the tests run on Mesa's). */
export const webgpu = webgpuCandidate(true);
/** What `auto` tries: a hardware adapter only. */
export const webgpuHardware = webgpuCandidate(false);
