/**
 * Both ends of every session send a heartbeat every `intervalMs` and give up on a peer silent for
 * `timeoutMs`; this is the joining side's timer (the joined side's is the pool's).
 */
export function keepAlive(heartbeat: {
  intervalMs: number;
  timeoutMs: number;
  lastHeard(): number;
  beat(): void;
  silent(seconds: number): void;
}): NodeJS.Timeout {
  const timer = setInterval(() => {
    const silent = performance.now() - heartbeat.lastHeard();
    if (silent > heartbeat.timeoutMs) heartbeat.silent(silent / 1000);
    else heartbeat.beat();
  }, heartbeat.intervalMs);
  timer.unref();
  return timer;
}
