/**
 * A worker's own Prometheus metrics: where its time goes (compute, encoding, writing to the
 * socket), its traffic, and its memory, for finding out why one worker is the slow one.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { packageVersion } from '../common/package-info.js';
import type { ChannelMeter } from '../protocol/channel.js';
import type { WorkerObserver } from './worker.js';

/** Per message: ~1 ms (an fp32 header) to seconds (a whole mnist-cnn block on one core). */
const BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export class WorkerMetrics implements WorkerObserver {
  readonly registry = new Registry();
  private readonly r = this.registry;
  private readonly buildInfo = new Gauge({
    name: 'gradfleet_build_info',
    help: 'Always 1; labels: gradfleet version, role, model, compute backend, GPU adapter and worker name',
    labelNames: ['version', 'role', 'model', 'backend', 'adapter', 'worker'],
    registers: [this.r],
  });
  private readonly compute = new Histogram({
    name: 'gradfleet_compute_seconds',
    help: 'Compute time of each assignment (forward, backward and local reduction of its micro-batches)',
    buckets: BUCKETS,
    registers: [this.r],
  });
  private readonly encode = new Histogram({
    name: 'gradfleet_encode_seconds',
    help: 'Time to encode a frame (header + payload)',
    buckets: BUCKETS,
    registers: [this.r],
  });
  private readonly transfer = new Histogram({
    name: 'gradfleet_transfer_seconds',
    help: 'Time from handing a frame to the transport to its being written to the socket',
    buckets: BUCKETS,
    registers: [this.r],
  });
  private readonly sentBytes = new Counter({
    name: 'gradfleet_sent_bytes_total',
    help: 'Bytes sent to the coordinator',
    registers: [this.r],
  });
  private readonly receivedBytes = new Counter({
    name: 'gradfleet_received_bytes_total',
    help: 'Bytes received from the coordinator',
    registers: [this.r],
  });
  private readonly microBatches = new Counter({
    name: 'gradfleet_microbatches_total',
    help: 'Micro-batches computed',
    registers: [this.r],
  });

  readonly meter: ChannelMeter = {
    encoded: (seconds) => this.encode.observe(seconds),
    sent: (bytes) => this.sentBytes.inc(bytes),
    delivered: (seconds) => this.transfer.observe(seconds),
    received: (bytes) => this.receivedBytes.inc(bytes),
  };

  /** `identity.adapter`: adapterLabel of the GPU adapter, 'none' off a GPU. */
  constructor(
    private readonly identity: { worker: string; backend: string; adapter: string },
    tensorBytes: () => number,
  ) {
    collectDefaultMetrics({ register: this.registry });
    new Gauge({
      name: 'gradfleet_tensor_memory_bytes',
      help: "Bytes held in the compute backend's tensors",
      registers: [this.r],
      collect() {
        this.set(tensorBytes());
      },
    });
    this.welcomed('none');
  }

  welcomed(model: string): void {
    this.buildInfo.reset();
    this.buildInfo.set({ version: packageVersion, role: 'worker', model, ...this.identity }, 1);
  }

  computed(seconds: number, microBatches: number): void {
    this.compute.observe(seconds);
    this.microBatches.inc(microBatches);
  }
}
