/**
 * What a worker reports about its WebGPU adapter (hello, gradfleet_build_info, the run summary): part
 * of the wire, so it lives here; training/backends/adapters.ts fills it in from Dawn.
 */
import { z } from 'zod';

export const gpuAdapterSchema = z.object({
  vendor: z.string().max(256),
  architecture: z.string().max(256),
  device: z.string().max(256),
  description: z.string().max(512),
  /** A CPU implementation of WebGPU: correct, but slower than the wasm backend. */
  software: z.boolean(),
});
export type GpuAdapterInfo = z.infer<typeof gpuAdapterSchema>;
