/**
 * Both ends of every session send a heartbeat every `intervalMs` and give up on a peer silent for
 * `timeoutMs`; this is the joining side's timer (the joined side's is the pool's).
 */
export function keepAlive(o: {
  intervalMs: number;
  timeoutMs: number;
  lastHeard(): number;
  beat(): void;
  silent(seconds: number): void;
}): NodeJS.Timeout {
  const timer = setInterval(() => {
    const silent = performance.now() - o.lastHeard();
    if (silent > o.timeoutMs) o.silent(silent / 1000);
    else o.beat();
  }, o.intervalMs);
  timer.unref();
  return timer;
}
