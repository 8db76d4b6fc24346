/** Waiting on real processes: a free loopback port to give one, and polling until it is ready. */
import type { ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';

/** Ports this process has handed out: the kernel may offer a just-closed port again, and two servers of one test given the same port fail to start. */
const handedOut = new Set<number>();

export async function freePort(): Promise<number> {
  for (;;) {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as { port: number };
    await new Promise((resolve) => server.close(resolve));
    if (handedOut.has(port)) continue;
    handedOut.add(port);
    return port;
  }
}

export async function until<T>(
  what: string,
  probe: () => Promise<T | undefined | false>,
  timeoutMs = 30_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Polls a server process until `probe` says it serves; fails at once, with its log, if it exits first. */
export async function untilServing(
  child: ChildProcess,
  name: string,
  log: () => string,
  probe: () => Promise<boolean>,
  timeoutMs: number,
): Promise<void> {
  const exited = new Promise<never>((_, reject) =>
    child.once('exit', (code) => reject(new Error(`${name} exited (${code}):\n${log()}`))),
  );
  exited.catch(() => {});
  await Promise.race([exited, until(`${name} to serve`, probe, timeoutMs)]);
}
