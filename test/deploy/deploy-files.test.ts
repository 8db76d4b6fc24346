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
import { connect } from 'nats';
import { requireBinary } from '../helpers/binaries.js';
import { type Stage, envOf, execForm, instructionsOf, parseDockerfile } from '../helpers/dockerfile.js';
import { bin, tempDir } from '../helpers/gradfleet.js';
import { NATS_ROLE_PASSWORDS, startCluster } from '../helpers/nats.js';

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
  return Object.fromEntries(
    Object.entries(doc.services as Record<string, any>).map(([name, service]) => {
      const { extends: ext, ...own } = service;
      if (!ext) return [name, own];
      const baseFile = join(dirname(deploy(file)), ext.file);
      const base = parse(read(baseFile), { merge: true }).services[ext.service];
      return [name, { ...base, ...own, baseDir: dirname(baseFile) }];
    }),
  );
}

// Every manifest the kustomization applies (a later test checks that it lists every one there is).
const k8sDocs = () =>
  (parse(read(deploy('k8s/kustomization.yaml'))).resources as string[]).flatMap((f) =>
    parseAllDocuments(read(deploy(`k8s/${f}`))).map((d) => d.toJS()),
  );
/** True when every label a selector names holds on a pod's labels. */
const matches = (selector: Record<string, string>, podLabels: Record<string, string>) =>
  Object.entries(selector).every(([k, v]) => podLabels[k] === v);
const k8s = (kind: string, name: string) =>
  k8sDocs().find((d) => d.kind === kind && d.metadata.name === name);

const helpOf = new Map<string, string>();
function expectKnownFlags(args: string[]): void {
  const sub = args[0];
  if (!helpOf.has(sub))
    helpOf.set(sub, execFileSync(process.execPath, [bin, sub, '--help'], { encoding: 'utf8' }));
  for (const a of args.filter((x) => x.startsWith('--')))
    expect(helpOf.get(sub), `gradfleet ${sub} has no ${a}`).toContain(`${a} `);
}

describe('Prometheus files', () => {
  it('promtool accepts the config and the rules', () => {
    const promtool = requireBinary('promtool');
    const out = execFileSync(promtool, ['check', 'config', deploy('prometheus/prometheus.yml')], {
      encoding: 'utf8',
    });
    expect(out).toContain('SUCCESS');
    expect(
      execFileSync(promtool, ['check', 'rules', deploy('prometheus/alerts.yml')], { encoding: 'utf8' }),
    ).toMatch(/SUCCESS: \d+ rules found/);
  });

  it('promtool test rules: the alerts fire and resolve when their cases say (test/deploy/promtool)', () => {
    const promtool = requireBinary('promtool');
    const cases = join(root, 'test/deploy/promtool/alert-rules.yml');
    expect(execFileSync(promtool, ['test', 'rules', cases], { encoding: 'utf8', stdio: 'pipe' })).toMatch(
      /SUCCESS/,
    );
    // …and a case whose expectation is wrong fails: the cases are checked, not just parsed.
    const wrong = join(scratch, 'wrong-alert-cases.yml');
    writeFileSync(
      wrong,
      read(cases)
        .replace('../../../deploy/prometheus/alerts.yml', deploy('prometheus/alerts.yml'))
        .replace(/eval_time: 8m/, 'eval_time: 3m'),
    );
    expect(() => execFileSync(promtool, ['test', 'rules', wrong], { stdio: 'pipe' })).toThrow(
      /GradfleetShardLost/,
    );
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
    expect(job('gradfleet-coordinator').static_configs[0].targets).toEqual([
      `coordinator:${DEFAULT_COORDINATOR_METRICS_PORT}`,
    ]);
    expect(job('gradfleet-worker').dns_sd_configs[0]).toMatchObject({
      names: ['worker'],
      port: DEFAULT_WORKER_METRICS_PORT,
    });
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

  /** Every metric name a query reads, a histogram's `_sum`/`_count`/`_bucket` as the histogram. */
  const queried = (expr: string) =>
    [...expr.matchAll(/\b(gradfleet_\w+)/g)].map((m) => m[1].replace(/_(sum|count|bucket)$/, ''));
  const dashboardMetrics = new Set<string>(
    dashboard.panels.flatMap((p: any) => (p.targets ?? []).flatMap((t: any) => queried(t.expr))),
  );

  it('every metric docs/operations.md describes has a panel (gradfleet_paused, _steps_total, _local_worker_restarts_total too)', () => {
    const ops = read(join(root, 'docs/operations.md'));
    const section = ops.slice(
      ops.indexOf('## Metrics and alerts'),
      ops.indexOf('\n## ', ops.indexOf('## Metrics and alerts') + 1),
    );
    // The metric tables: `name` or `name{labels}` in the first column, the `gradfleet_` prefix left out.
    const described = section
      .split('\n')
      .filter((line) => line.startsWith('| `'))
      .flatMap((line) =>
        [...line.split('|')[1].matchAll(/`([a-z_]+)(?:\{[^`]*\})?`/g)].map((m) => `gradfleet_${m[1]}`),
      );
    expect(described.length).toBeGreaterThan(40);
    expect(described).toEqual(
      expect.arrayContaining([
        'gradfleet_paused',
        'gradfleet_steps_total',
        'gradfleet_local_worker_restarts_total',
      ]),
    );
    expect(described.filter((m) => !dashboardMetrics.has(m))).toEqual([]);
  });

  it('every gradfleet metric the dashboard queries is one the coordinator or a worker registers', () => {
    const registered = new Set(
      ['coordinator/metrics.ts', 'worker/metrics.ts'].flatMap((f) =>
        [...read(join(root, f)).matchAll(/name: '(gradfleet_\w+)'/g)].map((m) => m[1]),
      ),
    );
    expect(registered.size).toBeGreaterThan(40);
    expect([...dashboardMetrics].filter((m) => !registered.has(m))).toEqual([]);
  });

  it('panels sit on the 24-column grid without overlapping, each below its row', () => {
    const boxes = dashboard.panels.map((p: any) => ({ title: p.title, ...p.gridPos }));
    for (const b of boxes) {
      expect(b.x + b.w, b.title).toBeLessThanOrEqual(24);
      expect(b.x >= 0 && b.w > 0 && b.h > 0, b.title).toBe(true);
    }
    for (let i = 0; i < boxes.length; i++)
      for (let j = i + 1; j < boxes.length; j++) {
        const [a, b] = [boxes[i], boxes[j]];
        const overlap = a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
        expect(overlap, `"${a.title}" and "${b.title}"`).toBe(false);
      }
    // In the JSON's order, a panel's row is the last row before it: it must also be above it on screen.
    let rowY = -1;
    for (const p of dashboard.panels) {
      if (p.type === 'row') {
        expect(p.gridPos.y, p.title).toBeGreaterThan(rowY);
        rowY = p.gridPos.y;
      } else expect(p.gridPos.y, p.title).toBeGreaterThan(rowY);
    }
  });

  it('the dashboard provider reads the folder compose mounts the dashboards into', () => {
    const provider = parse(read(deploy('grafana/provisioning/dashboards/gradfleet.yml'))).providers[0];
    const grafana = composeServices('docker-compose.yml').grafana;
    const mount = grafana.volumes.find((v: string) => v.includes('dashboards:'));
    expect(mount.split(':')[1]).toBe(provider.options.path);
  });
});

/** Where compose publishes ports: loopback unless GRADFLEET_BIND says otherwise. */
// biome-ignore lint/suspicious/noTemplateCurlyInString: compose's variable syntax, taken literally
const BIND = '${GRADFLEET_BIND:-127.0.0.1}';

describe('compose', () => {
  for (const [file, dockerfile, image] of [
    ['docker-compose.yml', 'Dockerfile.gpu', 'gradfleet/gradfleet-gpu'],
    ['docker-compose.cpu.yml', 'Dockerfile', 'gradfleet/gradfleet'],
  ] as const) {
    it(`${file}: images, ports, volumes and flags match the code`, () => {
      const s = composeServices(file);
      const workerKinds = dockerfile === 'Dockerfile.gpu' ? ['worker', 'worker-webgpu'] : ['worker'];
      expect(Object.keys(s).sort()).toEqual([
        'coordinator',
        'grafana',
        'nats-1',
        'nats-2',
        'nats-3',
        'prometheus',
        'shard',
        ...workerKinds,
      ]);
      // Every service that builds names a Dockerfile that exists.
      for (const [name, service] of Object.entries(s))
        if (service.build)
          expect(
            existsSync(join(root, service.build.dockerfile)),
            `${name}: ${service.build.dockerfile}`,
          ).toBe(true);
      expect(s.coordinator.image).toBe(`${image}:${pkg.version}`);
      expect(s.worker.image).toBe(s.coordinator.image);
      expect(existsSync(join(root, s.coordinator.build.dockerfile))).toBe(true);
      expect(s.coordinator.build.dockerfile).toBe(`deploy/docker/${dockerfile}`);

      const c = s.coordinator.command as string[];
      expect(c[0]).toBe('coordinator');
      expect(Number(flag(c, '--port'))).toBe(DEFAULT_COORDINATOR_PORT);
      expect(Number(flag(c, '--metrics-port'))).toBe(DEFAULT_COORDINATOR_METRICS_PORT);
      expect(flag(c, '--metrics-host')).toBe('0.0.0.0');
      expect(s.coordinator.ports).toEqual(
        expect.arrayContaining([`${BIND}:${DEFAULT_COORDINATOR_PORT}:${DEFAULT_COORDINATOR_PORT}`]),
      );
      // Published on loopback unless the operator says otherwise; NATS monitoring not at all.
      for (const [name, service] of Object.entries(s))
        for (const port of service.ports ?? [])
          expect(port.startsWith(`${BIND}:`) && /:\d+:\d+$/.test(port), `${name}: ${port}`).toBe(true);
      expect(s['nats-1'].ports).toEqual([`${BIND}:4222:4222`]);
      // No secret, no start: compose's ${VAR:?} refuses an unset or empty value.
      expect(s.coordinator.environment.GRADFLEET_SECRET).toMatch(/^\$\{GRADFLEET_SECRET:\?/);
      expect(s.worker.environment.GRADFLEET_SECRET).toMatch(/^\$\{GRADFLEET_SECRET:\?/);
      expect(s.coordinator.environment.GRADFLEET_NATS_PASS).toMatch(
        /^\$\{GRADFLEET_NATS_COORDINATOR_PASS:\?/,
      );
      expect(s.worker.environment.GRADFLEET_NATS_PASS).toMatch(/^\$\{GRADFLEET_NATS_WORKER_PASS:\?/);
      // Every role's password, the shard's too: nats-server refuses the config without any one of them.
      for (const n of ['nats-1', 'nats-2', 'nats-3']) {
        expect(Object.keys(s[n].environment).sort()).toEqual([
          'GRADFLEET_NATS_COORDINATOR_PASS',
          'GRADFLEET_NATS_SHARD_PASS',
          'GRADFLEET_NATS_WORKER_PASS',
          'NATS_NAME',
        ]);
        expect(s[n].environment.GRADFLEET_NATS_SHARD_PASS).toMatch(/^\$\{GRADFLEET_NATS_SHARD_PASS:\?/);
      }
      expect(s.prometheus.command).not.toContain('--web.enable-lifecycle');
      expect(s.grafana.environment.GF_SECURITY_ADMIN_PASSWORD).toMatch(/^\$\{GRAFANA_ADMIN_PASSWORD:\?/);
      const w = s.worker.command as string[];
      expect(w[0]).toBe('worker');
      // Both meet on every node of the compose NATS cluster, each node running deploy/nats/cluster.conf.
      const natsNodes = ['nats-1', 'nats-2', 'nats-3'];
      for (const args of [c, w]) {
        expect(flag(args, '--transport')).toBe('nats');
        expect(flag(args, '--nats-url')).toBe(natsNodes.map((n) => `nats://${n}:4222`).join(','));
      }
      expect(flag(c, '--nats-user')).toBe('coordinator');
      expect(flag(w, '--nats-user')).toBe('worker');
      for (const n of natsNodes) {
        expect(s[n].environment.NATS_NAME).toBe(n);
        expect(s[n].volumes).toEqual(['../nats/cluster.conf:/etc/nats/cluster.conf:ro']);
        expect(read(deploy('nats/cluster.conf'))).toContain(`nats-route://${n}:6222`);
      }
      expect(Number(flag(w, '--metrics-port'))).toBe(DEFAULT_WORKER_METRICS_PORT);
      expectKnownFlags(c);
      expectKnownFlags(w);

      // Shard reducers: as many as the coordinator's --shards, one variable for both, 0 (none) unless set.
      // biome-ignore lint/suspicious/noTemplateCurlyInString: compose's variable syntax, taken literally
      const shardCount = '${GRADFLEET_SHARDS:-0}';
      expect(flag(c, '--shards')).toBe(shardCount);
      expect(String(s.shard.deploy.replicas)).toBe(shardCount);
      const sh = s.shard.command as string[];
      expect(sh[0]).toBe('shard');
      expect(flag(sh, '--transport')).toBe('nats');
      expect(flag(sh, '--nats-url')).toBe(flag(c, '--nats-url'));
      expect(flag(sh, '--nats-user')).toBe('shard');
      expectKnownFlags(sh);
      expect(s.shard.environment.GRADFLEET_NATS_PASS).toMatch(/^\$\{GRADFLEET_NATS_SHARD_PASS:\?/);
      expect(s.shard.environment.GRADFLEET_SECRET).toMatch(/^\$\{GRADFLEET_SECRET:\?/);
      expect(s.shard.image).toBe(s.coordinator.image);
      // A shard needs no GPU, and over NATS publishes no port.
      expect(s.shard.deploy.resources).toBeUndefined();
      expect(s.shard.ports).toBeUndefined();

      for (const service of [s.prometheus, s.grafana]) {
        for (const v of service.volumes.filter((x: string) => x.startsWith('.')))
          expect(existsSync(join(service.baseDir, v.split(':')[0])), v).toBe(true);
      }
      const devices = s.worker.deploy?.resources?.reservations?.devices;
      if (dockerfile === 'Dockerfile.gpu')
        expect(devices).toEqual([{ driver: 'nvidia', count: 1, capabilities: ['gpu'] }]);
      else expect(devices).toBeUndefined();
    });
  }

  it('docker-compose.yml: the webgpu workers run the webgpu image as the worker would, with a GPU that has graphics', () => {
    const s = composeServices('docker-compose.yml');
    const w = s['worker-webgpu'];
    expect(w.image).toBe(`gradfleet/gradfleet-webgpu:${pkg.version}`);
    expect(w.build.dockerfile).toBe('deploy/docker/Dockerfile.webgpu');
    // Opt-in: by default the stack's GPUs go to the native-TensorFlow workers.
    expect(w.profiles).toEqual(['webgpu']);
    expect(s.worker.profiles).toBeUndefined();
    // What the container runs: the image's entrypoint, then the service's command.
    const argv = [...execForm(finalStage('Dockerfile.webgpu'), 'ENTRYPOINT')!.slice(2), ...w.command];
    expect(argv.slice(0, 3)).toEqual(['worker', '--backend', 'webgpu']);
    // …the same worker flags as the native workers', nothing lost in the copy.
    expect(argv.slice(3)).toEqual((s.worker.command as string[]).slice(1));
    expectKnownFlags(argv);
    expect(w.environment).toEqual(s.worker.environment);
    expect(w.deploy.resources.reservations.devices).toEqual([
      { driver: 'nvidia', count: 1, capabilities: ['gpu', 'compute', 'utility', 'graphics'] },
    ]);
    // Prometheus scrapes workers by the DNS name `worker`: these answer to it.
    expect(w.networks.default.aliases).toContain('worker');
    expect(
      parse(read(deploy('prometheus/prometheus.yml'))).scrape_configs.find(
        (j: any) => j.job_name === 'gradfleet-worker',
      ).dns_sd_configs[0].names,
    ).toEqual(['worker']);
  });
});

/** The stage an image is made of: the Dockerfile's last. */
const finalStage = (file: string): Stage => parseDockerfile(deploy(`docker/${file}`)).stages.at(-1)!;
const runs = (stage: Stage) =>
  stage.instructions
    .filter((i) => i.op === 'RUN')
    .map((i) => i.args)
    .join('\n');
/** CUDA each libtensorflow GPU build was made with (TensorFlow's tested build configurations). */
const CUDA_FOR_TF: Record<string, [number, number]> = {
  '2.15': [12, 2],
  '2.16': [12, 3],
  '2.17': [12, 3],
  '2.18': [12, 5],
};

describe('Dockerfiles (parsed: no Docker here to build them, and hadolint is in neither Debian nor npm as a program)', () => {
  const mainJs = `/app/${pkg.bin.gradfleet}`;

  it('every image: stages it copies from exist, files it copies exist, and it starts the CLI that package.json names', () => {
    for (const file of readdirSync(deploy('docker')).filter((f) => f.startsWith('Dockerfile'))) {
      const { stages } = parseDockerfile(deploy(`docker/${file}`));
      const names = stages.map((st) => st.name).filter(Boolean);
      for (const [i, st] of stages.entries()) {
        for (const copy of st.instructions.filter((x) => x.op === 'COPY')) {
          const from = copy.args.match(/--from=(\S+)/)?.[1];
          // A stage copies only from one defined before it.
          if (from) expect(names.slice(0, i), `${file}: COPY --from=${from}`).toContain(from);
          else
            for (const src of copy.args.split(/\s+/).slice(0, -1))
              expect(existsSync(join(root, src)), `${file}: COPY ${src}`).toBe(true);
        }
        for (const script of runs(st).matchAll(/scripts\/[\w.-]+/g))
          expect(existsSync(join(root, script[0])), `${file}: ${script[0]}`).toBe(true);
      }
      expect(execForm(stages.at(-1)!, 'ENTRYPOINT')!.slice(0, 2), file).toEqual(['node', mainJs]);
      expect(
        stages.at(-1)!.instructions.some((x) => x.op === 'USER' && x.args !== 'root'),
        `${file}: runs as root`,
      ).toBe(true);
    }
  });

  it('Dockerfile.gpu: a CUDA 12 base new enough for its libtensorflow, tfjs-node-gpu built by the install script', () => {
    const { args, stages } = parseDockerfile(deploy('docker/Dockerfile.gpu'));
    const cudaStages = stages.filter((st) => st.name !== 'node');
    expect(cudaStages.length).toBe(2); // build and runtime
    for (const st of cudaStages)
      expect(st.from).toMatch(/^nvidia\/cuda:12\.\d+\.\d+-cudnn\d*-runtime-ubuntu22\.04$/);
    const build = stages.find((st) => st.name === 'build')!;
    const tfVersion = build.instructions
      .find((i) => i.op === 'ARG' && i.args.startsWith('TF_VERSION='))!
      .args.split('=')[1];
    const [cudaMajor, cudaMinor] = args.CUDA_IMAGE.match(/cuda:(\d+)\.(\d+)/)!
      .slice(1)
      .map(Number);
    const needs = CUDA_FOR_TF[tfVersion.split('.').slice(0, 2).join('.')];
    expect(needs, `libtensorflow ${tfVersion}`).toBeDefined();
    expect(
      cudaMajor === needs[0] && cudaMinor >= needs[1],
      `CUDA ${cudaMajor}.${cudaMinor} for libtensorflow ${tfVersion}`,
    ).toBe(true);
    // libtensorflow 2.18 was built with cuDNN 9: the image's must be 9 (the unversioned `cudnn` tags are 9).
    if (tfVersion.startsWith('2.18')) expect(args.CUDA_IMAGE).toMatch(/-cudnn-|-cudnn9-/);
    expect(runs(build)).toMatch(/scripts\/install-tfjs-node-gpu\.sh --tf-version "\$\{TF_VERSION\}"/);
    // The runtime has the built app and no compiler.
    const runtime = stages.at(-1)!;
    expect(
      runtime.instructions.some((i) => i.op === 'COPY' && i.args.startsWith('--from=build /app /app')),
    ).toBe(true);
    expect(runs(runtime)).not.toMatch(/g\+\+|build-essential/);
    expect(envOf(runtime).NVIDIA_DRIVER_CAPABILITIES.split(',')).toEqual(
      expect.arrayContaining(['compute', 'utility']),
    );
    // The script installs the tfjs-node-gpu the code expects.
    expect(read(join(root, 'scripts/install-tfjs-node-gpu.sh'))).toContain(
      `TFJS_VERSION=${pkg.peerDependencies['@tensorflow/tfjs-node-gpu']}`,
    );
  });

  it("Dockerfile.webgpu: the Vulkan loader, graphics among the driver capabilities, NVIDIA's EGL ICD, a webgpu worker", () => {
    const st = finalStage('Dockerfile.webgpu');
    const env = envOf(st);
    expect(env.NVIDIA_DRIVER_CAPABILITIES.split(',').sort()).toEqual(['compute', 'graphics', 'utility']);
    const apt = runs(st)
      .match(/apt-get install [^&]*/)![0]
      .split(/\s+/);
    expect(apt).toEqual(expect.arrayContaining(['libvulkan1', 'libegl1', 'libxext6']));
    // Mesa's software adapter must not be what a GPU worker runs on.
    expect(apt.some((p) => p.startsWith('mesa-'))).toBe(false);
    // The ICD files it writes are JSON naming NVIDIA's EGL library, and the loader is pointed at the Vulkan
    // one.
    const written = new Map(
      [...runs(st).matchAll(/printf '([^']*)'\s*>\s*(\S+)/g)].map((m) => [
        m[2],
        JSON.parse(m[1].replace(/\\n/g, '\n')),
      ]),
    );
    expect(written.get('/etc/vulkan/icd.d/nvidia_icd.json')).toMatchObject({
      file_format_version: '1.0.0',
      ICD: { library_path: 'libEGL_nvidia.so.0' },
    });
    expect(written.get('/usr/share/glvnd/egl_vendor.d/10_nvidia.json')).toMatchObject({
      ICD: { library_path: 'libEGL_nvidia.so.0' },
    });
    expect(env.VK_ICD_FILENAMES).toBe('/etc/vulkan/icd.d/nvidia_icd.json');
    const entry = execForm(st, 'ENTRYPOINT')!;
    expect(entry).toEqual(['node', mainJs, 'worker', '--backend', 'webgpu']);
    expectKnownFlags(entry.slice(2));
    // The optional packages it depends on are really in package.json (npm ci installs them in the build
    // stage).
    for (const p of ['webgpu', '@tensorflow/tfjs-backend-webgpu'])
      expect(pkg.optionalDependencies[p], p).toBeDefined();
    expect(runs(parseDockerfile(deploy('docker/Dockerfile.webgpu')).stages[0])).toContain(
      'test -d node_modules/webgpu',
    );
  });

  it('the parser joins continued lines and skips comments (what the checks above stand on)', () => {
    expect(
      instructionsOf('# c\nFROM a AS b\nRUN x \\\n  # inside\n  && y\nENV A=1 \\\n    B="two"\n'),
    ).toEqual([
      { op: 'FROM', args: 'a AS b' },
      { op: 'RUN', args: 'x && y' },
      { op: 'ENV', args: 'A=1 B="two"' },
    ]);
  });
});

describe('scripts/install-tfjs-node-gpu.sh', () => {
  const script = join(root, 'scripts/install-tfjs-node-gpu.sh');
  const runScript = (args: string[]) => {
    try {
      return { code: 0, out: execFileSync('bash', [script, ...args], { encoding: 'utf8', stdio: 'pipe' }) };
    } catch (err) {
      const e = err as { status: number; stderr: string; stdout: string };
      return { code: e.status, out: `${e.stdout}${e.stderr}` };
    }
  };

  it('passes bash -n and shellcheck', () => {
    execFileSync('bash', ['-n', script]);
    execFileSync(requireBinary('shellcheck'), [script], { stdio: 'pipe' });
  });

  it('refuses what it cannot build before installing anything: other versions, http, a tarball that is not libtensorflow', () => {
    expect(runScript(['--help'])).toMatchObject({
      code: 0,
      out: expect.stringContaining('usage: scripts/install-tfjs-node-gpu.sh'),
    });
    expect(runScript(['--tf-version', '2.9.1']).out).toMatch(
      /supports libtensorflow 2\.15–2\.18 \(CUDA 12\)/,
    );
    expect(runScript(['--libtensorflow', 'http://example.invalid/libtensorflow.tar.gz']).out).toMatch(
      /use https/,
    );
    // Every version the images may ask for passes the version check (it fails later, on --dir).
    for (const v of ['2.15.0', '2.18.0'])
      expect(runScript(['--tf-version', v, '--dir', join(scratch, 'absent')]).out).toMatch(
        /--dir .*absent: no package\.json there/,
      );
    // A real .tar.gz without the C API headers and libraries: rejected before npm runs.
    const app = join(scratch, 'tfjs-app');
    execFileSync('mkdir', ['-p', join(app, 'not-tf')]);
    writeFileSync(join(app, 'package.json'), '{"name":"x","version":"1.0.0","private":true}');
    writeFileSync(join(app, 'not-tf', 'README'), 'hello');
    const tarball = join(scratch, 'not-tf.tar.gz');
    execFileSync('tar', ['-czf', tarball, '-C', join(app, 'not-tf'), 'README']);
    const r = runScript(['--dir', app, '--libtensorflow', tarball]);
    expect(r.code).not.toBe(0);
    expect(r.out).toMatch(/has no include\/tensorflow\/c\/c_api\.h: not a libtensorflow C library tarball/);
    expect(existsSync(join(app, 'node_modules'))).toBe(false);
    // A wrong digest is caught as well.
    expect(runScript(['--dir', app, '--libtensorflow', tarball, '--sha256', '0'.repeat(64)]).out).toMatch(
      /SHA-256 of .* is [0-9a-f]{64}, not 0{64}/,
    );
  });
});

describe('NATS cluster config', () => {
  it('nats-server accepts deploy/nats/cluster.conf, and its max_payload holds a chunk', () => {
    const natsServer = requireBinary('nats-server');
    // -t: parse and validate, then exit; non-zero (a throw here) on any error.
    execFileSync(natsServer, ['-t', '-c', deploy('nats/cluster.conf')], {
      env: { ...process.env, NATS_NAME: 'nats-1', ...NATS_ROLE_PASSWORDS },
      stdio: 'pipe',
    });
    expect(read(deploy('nats/cluster.conf'))).toMatch(/max_payload: 8MB/);
    // Without the role passwords it refuses to start: no accidental open server.
    expect(() =>
      execFileSync(natsServer, ['-t', '-c', deploy('nats/cluster.conf')], {
        env: { PATH: process.env.PATH, NATS_NAME: 'nats-1' },
        stdio: 'pipe',
      }),
    ).toThrow(/GRADFLEET_NATS_COORDINATOR_PASS/);
    // …the shard's included, shard reducers or not: why compose and k8s provide it wherever they provide the
    // others.
    const { GRADFLEET_NATS_SHARD_PASS: _shard, ...withoutShard } = NATS_ROLE_PASSWORDS;
    expect(() =>
      execFileSync(natsServer, ['-t', '-c', deploy('nats/cluster.conf')], {
        env: { PATH: process.env.PATH, NATS_NAME: 'nats-1', ...withoutShard },
        stdio: 'pipe',
      }),
    ).toThrow(/GRADFLEET_NATS_SHARD_PASS/);
  });

  it('the shipped users may do only their role: anonymous is refused, a worker cannot speak as the coordinator nor read what workers send', async () => {
    const [node] = await startCluster(scratch);
    await expect(connect({ servers: node.url })).rejects.toThrow(/Authorization/i);
    const login = (role: 'coordinator' | 'worker') =>
      connect({
        servers: node.url,
        user: role,
        pass: NATS_ROLE_PASSWORDS[
          role === 'coordinator' ? 'GRADFLEET_NATS_COORDINATOR_PASS' : 'GRADFLEET_NATS_WORKER_PASS'
        ],
      });
    const [coordinator, w1, w2] = [await login('coordinator'), await login('worker'), await login('worker')];
    const got: Record<string, string[]> = { w2: [], w1: [], coordinator: [] };
    const inbox = (who: string) => ({
      callback: (err: unknown, m: { subject: string; data: Uint8Array }) => {
        if (!err) got[who].push(`${m.subject}:${new TextDecoder().decode(m.data)}`);
      },
    });
    w2.subscribe('gradfleet.s.abc.down', inbox('w2'));
    w2.subscribe('gradfleet.weights', inbox('w2'));
    w1.subscribe('gradfleet.s.abc.up', inbox('w1')); // denied by the server
    coordinator.subscribe('gradfleet.s.abc.up', inbox('coordinator'));
    await Promise.all([w1.flush(), w2.flush(), coordinator.flush()]);
    const arrived = async (who: string, entry: string) => {
      const deadline = Date.now() + 10_000;
      while (!got[who].includes(entry) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      expect(got[who]).toContain(entry);
    };
    // A worker forging the coordinator's subjects: the server drops both. Its allowed message after them is
    // the barrier.
    w1.publish('gradfleet.s.abc.down', new TextEncoder().encode('forged'));
    w1.publish('gradfleet.weights', new TextEncoder().encode('forged'));
    w2.publish('gradfleet.s.abc.up', new TextEncoder().encode('w2-up'));
    w1.publish('gradfleet.s.abc.up', new TextEncoder().encode('w1-up'));
    await arrived('coordinator', 'gradfleet.s.abc.up:w1-up');
    await arrived('coordinator', 'gradfleet.s.abc.up:w2-up');
    await Promise.all([w1.flush(), w2.flush()]); // whatever the server sent them before now has arrived
    expect(got.w2).toEqual([]);
    expect(got.w1).toEqual([]); // it could not subscribe to what workers send
    // The coordinator's own messages do reach a worker: the subscriptions were live.
    coordinator.publish('gradfleet.s.abc.down', new TextEncoder().encode('genuine'));
    await arrived('w2', 'gradfleet.s.abc.down:genuine');
    await Promise.all([coordinator.close(), w1.close(), w2.close()]);
  }, 60_000);
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
    expect(service.spec.ports.map((p: any) => p.port).sort()).toEqual(
      [DEFAULT_COORDINATOR_PORT, DEFAULT_COORDINATOR_METRICS_PORT].sort(),
    );
    expect(service.spec.selector).toEqual(coord.spec.template.metadata.labels);
    const nats = k8s('StatefulSet', 'nats');
    for (const args of [cc.args, wc.args]) {
      expect(flag(args, '--transport')).toBe('nats');
      // The NATS node on the pod's own node first, the core after it (nats-node.yaml).
      expect(flag(args, '--nats-url')).toBe(
        `nats://${k8s('Service', 'nats-node').metadata.name}:4222,nats://${k8s('Service', 'nats').metadata.name}:4222`,
      );
    }
    expect(nats.spec.replicas).toBe(3);
    expect(k8s('PodDisruptionBudget', 'nats').spec.maxUnavailable).toBe(1);
    expect(Number(flag(wc.args, '--metrics-port'))).toBe(DEFAULT_WORKER_METRICS_PORT);
    for (const [deployment, port] of [
      [coord, DEFAULT_COORDINATOR_METRICS_PORT],
      [workers, DEFAULT_WORKER_METRICS_PORT],
    ] as const) {
      expect(deployment.spec.template.metadata.annotations).toMatchObject({
        'prometheus.io/scrape': 'true',
        'prometheus.io/port': String(port),
      });
    }
    expect(wc.resources.limits['nvidia.com/gpu']).toBe(1);
    expect(pdb.spec.selector.matchLabels).toEqual(workers.spec.template.metadata.labels);
    expect(pdb.spec.maxUnavailable).toBeLessThan(workers.spec.replicas);
    expect(coord.spec.strategy.type).toBe('Recreate');
    expectKnownFlags(cc.args);
    expectKnownFlags(wc.args);
  });

  it('the webgpu workers: their image, a GPU each with graphics, valid worker flags, and no overlap with the native workers', () => {
    const webgpu = k8s('Deployment', 'gradfleet-worker-webgpu');
    const native = k8s('Deployment', 'gradfleet-worker');
    const [c] = webgpu.spec.template.spec.containers;
    expect(c.image).toBe(`gradfleet/gradfleet-webgpu:${pkg.version}`);
    expect(c.resources.limits['nvidia.com/gpu']).toBe(1);
    expect(webgpu.spec.template.spec.tolerations).toEqual(native.spec.template.spec.tolerations);
    expect(c.env).toContainEqual({ name: 'NVIDIA_DRIVER_CAPABILITIES', value: 'compute,utility,graphics' });
    // The image's entrypoint is `worker --backend webgpu`; the args are the native workers' flags.
    const argv = [...execForm(finalStage('Dockerfile.webgpu'), 'ENTRYPOINT')!.slice(2), ...c.args];
    expect(argv.slice(0, 3)).toEqual(['worker', '--backend', 'webgpu']);
    const nativeArgs = native.spec.template.spec.containers[0].args as string[];
    expect(argv.slice(3)).toEqual(
      nativeArgs.slice(1).filter((a, i, all) => a !== '--backend' && all[i - 1] !== '--backend'),
    );
    expectKnownFlags(argv);
    // Two Deployments whose selectors match each other's pods fight over them.
    expect(matches(native.spec.selector.matchLabels, webgpu.spec.template.metadata.labels)).toBe(false);
    expect(matches(webgpu.spec.selector.matchLabels, native.spec.template.metadata.labels)).toBe(false);
    expect(matches(webgpu.spec.selector.matchLabels, webgpu.spec.template.metadata.labels)).toBe(true);
    expect(k8s('PodDisruptionBudget', 'gradfleet-worker-webgpu').spec.selector.matchLabels).toEqual(
      webgpu.spec.template.metadata.labels,
    );
    // Scraped like the others, and let into NATS and the metrics port by the policies (they select by name).
    expect(webgpu.spec.template.metadata.annotations).toMatchObject({
      'prometheus.io/scrape': 'true',
      'prometheus.io/port': String(DEFAULT_WORKER_METRICS_PORT),
    });
    expect(
      matches(
        k8s('NetworkPolicy', 'gradfleet-metrics').spec.podSelector.matchLabels,
        webgpu.spec.template.metadata.labels,
      ),
    ).toBe(true);
  });

  it("nats-server accepts the NATS ConfigMap, whose routes name the StatefulSet's pods", () => {
    const conf = k8s('ConfigMap', 'nats-config').data['nats.conf'];
    for (const i of [0, 1, 2]) expect(conf).toContain(`nats-route://nats-${i}.nats:6222`);
    const file = join(scratch, 'k8s-nats.conf');
    writeFileSync(file, conf);
    execFileSync(requireBinary('nats-server'), ['-t', '-c', file], {
      env: { ...process.env, NATS_NAME: 'nats-0', ...NATS_ROLE_PASSWORDS },
      stdio: 'pipe',
    });
    // The same users as the compose cluster's, their passwords from a required secret.
    const authorization = (text: string) =>
      text.match(/authorization \{[\s\S]*?\n\s*\}\n/)![0].replace(/\s+/g, ' ');
    expect(authorization(conf)).toBe(authorization(read(deploy('nats/cluster.conf'))));
    const env = k8s('StatefulSet', 'nats').spec.template.spec.containers[0].env;
    for (const key of ['coordinator', 'worker', 'shard'])
      expect(env).toContainEqual({
        name: `GRADFLEET_NATS_${key.toUpperCase()}_PASS`,
        valueFrom: { secretKeyRef: { name: 'gradfleet-nats', key } },
      });
  });

  it('the secret is required, each role logs in to NATS as itself, and ingress is denied by default', () => {
    for (const [kind, name, role] of [
      ['Deployment', 'gradfleet-coordinator', 'coordinator'],
      ['Deployment', 'gradfleet-worker', 'worker'],
      ['Deployment', 'gradfleet-worker-webgpu', 'worker'],
      ['DaemonSet', 'gradfleet-shard', 'shard'],
    ]) {
      const [container] = k8s(kind, name).spec.template.spec.containers;
      expect(container.env).toContainEqual({
        name: 'GRADFLEET_SECRET',
        valueFrom: { secretKeyRef: { name: 'gradfleet-secret', key: 'secret', optional: false } },
      });
      expect(container.env).toContainEqual({
        name: 'GRADFLEET_NATS_PASS',
        valueFrom: { secretKeyRef: { name: 'gradfleet-nats', key: role } },
      });
      expect(flag(container.args, '--nats-user')).toBe(role);
    }
    const deny = k8s('NetworkPolicy', 'default-deny-ingress');
    expect(deny.spec).toEqual({ podSelector: {}, policyTypes: ['Ingress'] });
    const nats = k8s('NetworkPolicy', 'nats');
    expect(nats.spec.podSelector.matchLabels).toEqual(
      k8s('StatefulSet', 'nats').spec.template.metadata.labels,
    );
    expect(nats.spec.ingress[0].from[0].podSelector.matchLabels['app.kubernetes.io/name']).toBe(
      k8s('Deployment', 'gradfleet-worker').spec.template.metadata.labels['app.kubernetes.io/name'],
    );
  });

  it("shard reducers: a DaemonSet beside the workers, none until nodes are labelled, as many as the coordinator's --shards", () => {
    const shards = k8s('DaemonSet', 'gradfleet-shard');
    const workers = k8s('Deployment', 'gradfleet-worker');
    const coord = k8s('Deployment', 'gradfleet-coordinator');
    const [sc] = shards.spec.template.spec.containers;
    const [cc] = coord.spec.template.spec.containers;
    const labels = shards.spec.template.metadata.labels;
    expect(shards.spec.selector.matchLabels).toEqual(labels);
    expect(sc.image).toBe(cc.image);
    expect(sc.resources.limits?.['nvidia.com/gpu']).toBeUndefined();
    // On the nodes the workers run on (they tolerate the GPU taint), and only where a node is labelled for
    // it.
    expect(shards.spec.template.spec.tolerations).toEqual(workers.spec.template.spec.tolerations);
    expect(shards.spec.template.spec.nodeSelector).toEqual({ 'gradfleet.io/shard': 'true' });
    expect(sc.args[0]).toBe('shard');
    expect(flag(sc.args, '--transport')).toBe('nats');
    expect(flag(sc.args, '--nats-url')).toBe(flag(cc.args, '--nats-url'));
    expect(flag(sc.args, '--id')).toBe('$(POD_NAME)');
    expect(sc.env).toContainEqual({
      name: 'POD_NAME',
      valueFrom: { fieldRef: { fieldPath: 'metadata.name' } },
    });
    expectKnownFlags(sc.args);
    // The coordinator's --shards comes from its env (Kubernetes expands $(VAR) in args), 0 (none) by default.
    expect(flag(cc.args, '--shards')).toBe('$(GRADFLEET_SHARDS)');
    expect(cc.env).toContainEqual({ name: 'GRADFLEET_SHARDS', value: '0' });
    // The policies admit it to NATS (its only link) and its selector takes no other pods, nor theirs it.
    for (const rule of k8s('NetworkPolicy', 'nats').spec.ingress.filter((r: any) =>
      r.ports.some((p: any) => p.port === 4222),
    )) {
      expect(rule.from.some((f: any) => matches(f.podSelector.matchLabels, labels))).toBe(true);
    }
    for (const other of [workers, coord, k8s('Deployment', 'gradfleet-worker-webgpu')]) {
      expect(
        matches(shards.spec.selector.matchLabels, other.spec.template.metadata.labels),
        other.metadata.name,
      ).toBe(false);
      expect(matches(other.spec.selector.matchLabels, labels), other.metadata.name).toBe(false);
    }
    expect(matches(k8s('PodDisruptionBudget', 'gradfleet-worker').spec.selector.matchLabels, labels)).toBe(
      false,
    );
  });

  it('a NATS node on every node: a DaemonSet of full members of the core’s cluster, with its config, users and policy, reached on the pod’s own node', () => {
    const node = k8s('DaemonSet', 'nats-node');
    const core = k8s('StatefulSet', 'nats');
    const [nc] = node.spec.template.spec.containers;
    const [cc] = core.spec.template.spec.containers;
    const labels = node.spec.template.metadata.labels;
    expect(node.spec.selector.matchLabels).toEqual(labels);
    // Its own pods only: no overlap with the core's selector, PDB or Service (a DaemonSet has no scale for a PDB).
    expect(matches(core.spec.selector.matchLabels, labels)).toBe(false);
    expect(matches(k8s('PodDisruptionBudget', 'nats').spec.selector.matchLabels, labels)).toBe(false);
    // The core's config (its routes seed the cluster), image and every role's password.
    expect(nc.image).toBe(cc.image);
    expect(nc.args).toEqual(cc.args);
    expect(node.spec.template.spec.volumes).toEqual(core.spec.template.spec.volumes);
    expect(nc.env.filter((e: any) => e.name !== 'NATS_NAME')).toEqual(
      cc.env.filter((e: any) => e.name !== 'NATS_NAME'),
    );
    expect(nc.env).toContainEqual({
      name: 'NATS_NAME',
      valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } },
    });
    // On the workers' GPU nodes too.
    expect(node.spec.template.spec.tolerations).toEqual(
      k8s('Deployment', 'gradfleet-worker').spec.template.spec.tolerations,
    );
    const service = k8s('Service', 'nats-node');
    expect(service.spec.selector).toEqual(labels);
    expect(service.spec.internalTrafficPolicy).toBe('Local');
    // Clients on 4222 from gradfleet's pods; routes on 6222 between every NATS pod, core and node, both ways.
    for (const policy of [k8s('NetworkPolicy', 'nats-node'), k8s('NetworkPolicy', 'nats')]) {
      const routes = policy.spec.ingress.find((r: any) => r.ports.some((p: any) => p.port === 6222));
      for (const pods of [labels, core.spec.template.metadata.labels])
        expect(routes.from.some((f: any) => matches(f.podSelector.matchLabels, pods))).toBe(true);
    }
    const clients = k8s('NetworkPolicy', 'nats-node').spec.ingress.find((r: any) =>
      r.ports.some((p: any) => p.port === 4222),
    );
    expect(
      clients.from.some((f: any) =>
        matches(
          f.podSelector.matchLabels,
          k8s('Deployment', 'gradfleet-worker').spec.template.metadata.labels,
        ),
      ),
    ).toBe(true);
  });

  it('the kustomization lists exactly the manifests that exist', () => {
    const kustomization = parse(read(deploy('k8s/kustomization.yaml')));
    for (const r of kustomization.resources) expect(existsSync(deploy(`k8s/${r}`)), r).toBe(true);
    // …and every manifest there is listed: one left out would silently never be applied.
    const manifests = readdirSync(deploy('k8s')).filter(
      (f) => /\.ya?ml$/.test(f) && f !== 'kustomization.yaml',
    );
    expect([...kustomization.resources].sort()).toEqual(manifests.sort());
  });
});
