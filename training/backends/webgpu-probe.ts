/**
 * Looking for WebGPU adapters without Dawn's noise. Dawn writes its own warnings ("Warning:
 * maxDynamicUniformBuffersPerPipelineLayout artificially reduced…", for every software adapter it
 * enumerates) with fprintf straight to file descriptor 2: `webgpu` offers no log callback for them, and
 * Node cannot redirect its own stderr. So the adapters are asked for in a child process, whose stderr is
 * passed through only with GRADFLEET_LOG_LEVEL=debug (or trace); what the child saw is then replayed to
 * adapters.ts's functions (chooseAdapter, listAdapters) through a stand-in for Dawn, so that the choice
 * and the reasons are the ones they would give in process. `auto` opens Dawn in this process only where
 * the probe found a hardware adapter.
 */
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { type chooseAdapter, loadDawn } from './adapters.js';

/** Dawn's module as adapters.ts uses it. */
type DawnLike = Parameters<typeof chooseAdapter>[0];

/** What an adapter request gave: the adapter's info, none (null), or an error's message. */
type Answer = { adapter: Record<string, unknown> | null } | { error: string };

interface Recording {
  /** By the request's flags, joined with newlines ('' for the default adapter). */
  answers: Record<string, Answer>;
  /** What Dawn answered for an adapter name that matches none (its message lists the adapters). */
  unknown: Answer;
}

const PROBE_TIMEOUT_MS = 30_000;

/**
 * Run as `node --input-type=module -e PROBE <path of webgpu's index.js>`: asks Dawn for the default
 * (high-performance) adapter and for every adapter by name, and prints what it answered as JSON.
 */
const PROBE = `
import { pathToFileURL } from 'node:url';
const dawn = await import(pathToFileURL(process.argv[1]).href);
const ask = async (flags, options) => {
  try {
    const a = await dawn.create(flags).requestAdapter(options);
    if (!a) return { adapter: null };
    const { vendor, architecture, device, description, isFallbackAdapter } = a.info;
    return { adapter: { vendor, architecture, device, description, isFallbackAdapter } };
  } catch (err) {
    return { error: String(err && err.message !== undefined ? err.message : err) };
  }
};
const answers = { '': await ask([], { powerPreference: 'high-performance' }) };
const unknown = await ask(['adapter=gradfleet-probe-names-no-adapter']);
const names = 'error' in unknown ? [...unknown.error.matchAll(/^ \\* backend: '[^']*', name: '(.*)'$/gm)].map((m) => m[1]) : [];
for (const name of new Set(names)) answers['adapter=' + name] = await ask(['adapter=' + name]);
process.stdout.write(JSON.stringify({ answers, unknown }), () => process.exit(0));
`;

const verbose = () => /^(debug|trace)$/.test(process.env.GRADFLEET_LOG_LEVEL ?? '');

function record(webgpuPath: string): Promise<Recording> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', PROBE, webgpuPath], {
      stdio: ['ignore', 'pipe', verbose() ? 'inherit' : 'ignore'],
    });
    let out = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), PROBE_TIMEOUT_MS);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(out) as Recording);
      } catch {
        reject(new Error(`it ended with ${signal ? `signal ${signal}` : `code ${code}`} and no answer`));
      }
    });
  });
}

/** A Dawn that answers every adapter request as the child's Dawn did (its adapters open no device). */
function replay(rec: Recording): DawnLike {
  const adapterOf = (info: Record<string, unknown>) => ({
    info: info as DawnAdapterInfo,
    features: new Set<string>(),
    limits: {},
    requestDevice: () => Promise.reject(new Error('a probed adapter opens no device')),
  });
  return {
    globals: {},
    create: (flags: string[]) => ({
      requestAdapter: async () => {
        const answer = rec.answers[flags.join('\n')] ?? rec.unknown;
        if ('error' in answer) throw new Error(answer.error);
        return answer.adapter && adapterOf(answer.adapter);
      },
    }),
  };
}

type DawnAdapterInfo = NonNullable<
  Awaited<ReturnType<ReturnType<DawnLike['create']>['requestAdapter']>>
>['info'];

let probed: Promise<{ dawn: DawnLike } | { reason: string }> | undefined;

/**
 * The adapters as a child process's Dawn sees them, quietly (once per process); a reason instead where
 * Dawn is missing or the probe failed.
 */
export function probeAdapters(): Promise<{ dawn: DawnLike } | { reason: string }> {
  probed ??= (async () => {
    // Loading Dawn prints nothing (only enumerating adapters does): a missing or broken package is told
    // here, in adapters.ts's words.
    const loaded = await loadDawn();
    if (!loaded.dawn) return { reason: loaded.reason };
    try {
      return { dawn: replay(await record(createRequire(import.meta.url).resolve('webgpu'))) };
    } catch (err) {
      return { reason: `the WebGPU adapter probe failed: ${(err as Error).message}` };
    }
  })();
  return probed;
}
