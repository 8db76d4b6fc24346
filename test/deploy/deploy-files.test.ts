/**
 * The deploy/ files are checked by the real tools where they exist here (promtool) and otherwise
 * parsed and cross-checked against the code: ports, images, metric ports and the flags they pass.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { DEFAULT_COORDINATOR_METRICS_PORT, DEFAULT_WORKER_METRICS_PORT } from '../../cli/metrics-options.js';
import { DEFAULT_COORDINATOR_PORT } from '../../cli/commands/coordinator.js';
import { requireBinary } from '../helpers/binaries.js';
import { bin, tempDir } from '../helpers/gradfleet.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const deploy = (path: string) => join(root, 'deploy', path);
const read = (path: string) => readFileSync(path, 'utf8');
const pkg = JSON.parse(read(join(root, 'package.json')));
const scratch = tempDir();

/** The value after `flag` in an argument list. */
function flag(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i < 0 ? undefined : args[i + 1];
}

/** A compose file with each service's `extends` merged in (what `docker compose config` does). */
function composeServices(file: string): Record<string, any> {
  const doc = parse(read(deploy(file)), { merge: true });
  return Object.fromEntries(Object.entries(doc.services as Record<string, any>).map(([name, service]) => {
    const { extends: ext, ...own } = service;
    if (!ext) return [name, own];
    const baseFile = join(dirname(deploy(file)), ext.file);
    const base = parse(read(baseFile), { merge: true }).services[ext.service];
    return [name, { ...base, ...own, baseDir: dirname(baseFile) }];
  }));
}

const k8sDocs = () => ['coordinator.yaml', 'workers.yaml', 'namespace.yaml', 'nats.yaml'].flatMap((f) => parseAllDocuments(read(deploy(`k8s/${f}`))).map((d) => d.toJS()));
const k8s = (kind: string, name: string) => k8sDocs().find((d) => d.kind === kind && d.metadata.name === name);

const helpOf = new Map<string, string>();
function expectKnownFlags(args: string[]): void {
  const sub = args[0];
  if (!helpOf.has(sub)) helpOf.set(sub, execFileSync(process.execPath, [bin, sub, '--help'], { encoding: 'utf8' }));
  for (const a of args.filter((x) => x.startsWith('--'))) expect(helpOf.get(sub), `gradfleet ${sub} has no ${a}`).toContain(`${a} `);
}

describe('Prometheus files', () => {
  it('promtool accepts the config and the rules', () => {
    const promtool = requireBinary('promtool');
    const out = execFileSync(promtool, ['check', 'config', deploy('prometheus/prometheus.yml')], { encoding: 'utf8' });
    expect(out).toContain('SUCCESS');
    expect(execFileSync(promtool, ['check', 'rules', deploy('prometheus/alerts.yml')], { encoding: 'utf8' })).toMatch(/SUCCESS: \d+ rules found/);
  });

  it('promtool rejects a broken rule (the check can fail)', () => {
    const promtool = requireBinary('promtool');
    const broken = join(scratch, 'broken-rules.yml');
    writeFileSync(broken, 'groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: rate(x[\n');
    expect(() => execFileSync(promtool, ['check', 'rules', broken], { stdio: 'pipe' })).toThrow();
  });

  it('scrapes the ports and service names the code and compose use', () => {
    const config = parse(read(deploy('prometheus/prometheus.yml')));
    const job = (name: string) => config.scrape_configs.find((j: any) => j.job_name === name);
    expect(job('gradfleet-coordinator').static_configs[0].targets).toEqual([`coordinator:${DEFAULT_COORDINATOR_METRICS_PORT}`]);
    expect(job('gradfleet-worker').dns_sd_configs[0]).toMatchObject({ names: ['worker'], port: DEFAULT_WORKER_METRICS_PORT });
    const services = composeServices('docker-compose.yml');
    expect(Object.keys(services)).toEqual(expect.arrayContaining(['coordinator', 'worker']));
  });
});

describe('Grafana', () => {
  const dashboard = JSON.parse(read(deploy('grafana/dashboards/gradfleet.json')));
  const datasource = parse(read(deploy('grafana/provisioning/datasources/prometheus.yml'))).datasources[0];

  it('every panel queries the provisioned datasource, and every query names a gradfleet or process metric', () => {
    const panels = dashboard.panels.filter((p: any) => p.type !== 'row');
    expect(panels.length).toBeGreaterThanOrEqual(15);
    expect(new Set(dashboard.panels.map((p: any) => p.id)).size).toBe(dashboard.panels.length);
    for (const p of panels) {
      expect(p.datasource.uid, p.title).toBe(datasource.uid);
      expect(p.targets.length, p.title).toBeGreaterThan(0);
      for (const t of p.targets) expect(t.expr, p.title).toMatch(/gradfleet_|process_|nodejs_|up\{/);
    }
    expect(datasource.url).toBe('http://prometheus:9090');
  });

  it('the dashboard provider reads the folder compose mounts the dashboards into', () => {
    const provider = parse(read(deploy('grafana/provisioning/dashboards/gradfleet.yml'))).providers[0];
    const grafana = composeServices('docker-compose.yml').grafana;
    const mount = grafana.volumes.find((v: string) => v.includes('dashboards:'));
    expect(mount.split(':')[1]).toBe(provider.options.path);
  });
});

describe('compose', () => {
  for (const [file, dockerfile, image] of [
    ['docker-compose.yml', 'Dockerfile.gpu', 'gradfleet/gradfleet-gpu'],
    ['docker-compose.cpu.yml', 'Dockerfile', 'gradfleet/gradfleet'],
  ] as const) {
    it(`${file}: images, ports, volumes and flags match the code`, () => {
      const s = composeServices(file);
      expect(Object.keys(s).sort()).toEqual(['coordinator', 'grafana', 'nats-1', 'nats-2', 'nats-3', 'prometheus', 'worker']);
      expect(s.coordinator.image).toBe(`${image}:${pkg.version}`);
      expect(s.worker.image).toBe(s.coordinator.image);
      expect(existsSync(join(root, s.coordinator.build.dockerfile))).toBe(true);
      expect(s.coordinator.build.dockerfile).toBe(`deploy/docker/${dockerfile}`);

      const c = s.coordinator.command as string[];
      expect(c[0]).toBe('coordinator');
      expect(Number(flag(c, '--port'))).toBe(DEFAULT_COORDINATOR_PORT);
      expect(Number(flag(c, '--metrics-port'))).toBe(DEFAULT_COORDINATOR_METRICS_PORT);
      expect(flag(c, '--metrics-host')).toBe('0.0.0.0');
      expect(s.coordinator.ports).toEqual(expect.arrayContaining([`${DEFAULT_COORDINATOR_PORT}:${DEFAULT_COORDINATOR_PORT}`]));
      const w = s.worker.command as string[];
      expect(w[0]).toBe('worker');
      // Both meet on every node of the compose NATS cluster, each node running deploy/nats/cluster.conf.
      const natsNodes = ['nats-1', 'nats-2', 'nats-3'];
      for (const args of [c, w]) {
        expect(flag(args, '--transport')).toBe('nats');
        expect(flag(args, '--nats-url')).toBe(natsNodes.map((n) => `nats://${n}:4222`).join(','));
      }
      for (const n of natsNodes) {
        expect(s[n].environment.NATS_NAME).toBe(n);
        expect(s[n].volumes).toEqual(['../nats/cluster.conf:/etc/nats/cluster.conf:ro']);
        expect(read(deploy('nats/cluster.conf'))).toContain(`nats-route://${n}:6222`);
      }
      expect(Number(flag(w, '--metrics-port'))).toBe(DEFAULT_WORKER_METRICS_PORT);
      expectKnownFlags(c);
      expectKnownFlags(w);

      for (const service of [s.prometheus, s.grafana]) {
        for (const v of service.volumes.filter((x: string) => x.startsWith('.'))) expect(existsSync(join(service.baseDir, v.split(':')[0])), v).toBe(true);
      }
      const devices = s.worker.deploy?.resources?.reservations?.devices;
      if (dockerfile === 'Dockerfile.gpu') expect(devices).toEqual([{ driver: 'nvidia', count: 1, capabilities: ['gpu'] }]);
      else expect(devices).toBeUndefined();
    });
  }

  it('the GPU image has the CUDA and tfjs-node-gpu the code expects', () => {
    const gpu = read(deploy('docker/Dockerfile.gpu'));
    expect(gpu).toMatch(/FROM nvidia\/cuda:11\.2\.\d+-cudnn8-runtime/);
    expect(gpu).toContain(`@tensorflow/tfjs-node-gpu@${pkg.peerDependencies['@tensorflow/tfjs-node-gpu']}`);
    expect(read(deploy('docker/Dockerfile'))).toContain('ENTRYPOINT ["node", "/app/dist/cli/main.js"]');
  });
});

describe('NATS cluster config', () => {
  it('nats-server accepts deploy/nats/cluster.conf, and its max_payload holds a chunk', () => {
    const natsServer = requireBinary('nats-server');
    // -t: parse and validate, then exit; non-zero (a throw here) on any error.
    execFileSync(natsServer, ['-t', '-c', deploy('nats/cluster.conf')], { env: { ...process.env, NATS_NAME: 'nats-1' }, stdio: 'pipe' });
    expect(read(deploy('nats/cluster.conf'))).toMatch(/max_payload: 8MB/);
  });
});

describe('Kubernetes', () => {
  it('coordinator, service, workers and disruption budget agree on names, ports, metrics and GPUs', () => {
    const coord = k8s('Deployment', 'gradfleet-coordinator');
    const service = k8s('Service', 'gradfleet-coordinator');
    const workers = k8s('Deployment', 'gradfleet-worker');
    const pdb = k8s('PodDisruptionBudget', 'gradfleet-worker');
    const [cc] = coord.spec.template.spec.containers;
    const [wc] = workers.spec.template.spec.containers;
    expect(cc.image).toBe(`gradfleet/gradfleet:${pkg.version}`);
    expect(wc.image).toBe(`gradfleet/gradfleet-gpu:${pkg.version}`);
    expect(Number(flag(cc.args, '--port'))).toBe(DEFAULT_COORDINATOR_PORT);
    expect(Number(flag(cc.args, '--metrics-port'))).toBe(DEFAULT_COORDINATOR_METRICS_PORT);
    expect(service.spec.ports.map((p: any) => p.port).sort()).toEqual([DEFAULT_COORDINATOR_PORT, DEFAULT_COORDINATOR_METRICS_PORT].sort());
    expect(service.spec.selector).toEqual(coord.spec.template.metadata.labels);
    const nats = k8s('StatefulSet', 'nats');
    for (const args of [cc.args, wc.args]) {
      expect(flag(args, '--transport')).toBe('nats');
      expect(flag(args, '--nats-url')).toBe(`nats://${k8s('Service', 'nats').metadata.name}:4222`);
    }
    expect(nats.spec.replicas).toBe(3);
    expect(k8s('PodDisruptionBudget', 'nats').spec.maxUnavailable).toBe(1);
    expect(Number(flag(wc.args, '--metrics-port'))).toBe(DEFAULT_WORKER_METRICS_PORT);
    for (const [deployment, port] of [[coord, DEFAULT_COORDINATOR_METRICS_PORT], [workers, DEFAULT_WORKER_METRICS_PORT]] as const) {
      expect(deployment.spec.template.metadata.annotations).toMatchObject({ 'prometheus.io/scrape': 'true', 'prometheus.io/port': String(port) });
    }
    expect(wc.resources.limits['nvidia.com/gpu']).toBe(1);
    expect(pdb.spec.selector.matchLabels).toEqual(workers.spec.template.metadata.labels);
    expect(pdb.spec.maxUnavailable).toBeLessThan(workers.spec.replicas);
    expect(coord.spec.strategy.type).toBe('Recreate');
    expectKnownFlags(cc.args);
    expectKnownFlags(wc.args);
  });

  it('nats-server accepts the NATS ConfigMap, whose routes name the StatefulSet\'s pods', () => {
    const conf = k8s('ConfigMap', 'nats-config').data['nats.conf'];
    for (const i of [0, 1, 2]) expect(conf).toContain(`nats-route://nats-${i}.nats:6222`);
    const file = join(scratch, 'k8s-nats.conf');
    writeFileSync(file, conf);
    execFileSync(requireBinary('nats-server'), ['-t', '-c', file], { env: { ...process.env, NATS_NAME: 'nats-0' }, stdio: 'pipe' });
  });

  it('the kustomization lists exactly the manifests that exist', () => {
    const kustomization = parse(read(deploy('k8s/kustomization.yaml')));
    for (const r of kustomization.resources) expect(existsSync(deploy(`k8s/${r}`)), r).toBe(true);
    // …and every manifest there is listed: one left out would silently never be applied.
    const manifests = readdirSync(deploy('k8s')).filter((f) => /\.ya?ml$/.test(f) && f !== 'kustomization.yaml');
    expect([...kustomization.resources].sort()).toEqual(manifests.sort());
  });
});
