/**
 * A gauge that stays out of the exposition until its first value: "no test accuracy yet" must be
 * an absent series, not a 0 that dashboards would draw and alerts would read.
 */
import { Gauge, type GaugeConfiguration, type Registry } from 'prom-client';

export class LateGauge<L extends string = string> {
  private readonly gauge: Gauge<L>;
  private registered = false;

  constructor(
    private readonly registry: Registry,
    config: Omit<GaugeConfiguration<L>, 'registers'>,
  ) {
    this.gauge = new Gauge({ ...config, registers: [] });
  }

  set(value: number, labels?: Partial<Record<L, string>>): void {
    if (!this.registered) {
      this.registry.registerMetric(this.gauge);
      this.registered = true;
    }
    if (labels) this.gauge.set(labels, value);
    else this.gauge.set(value);
  }
}
