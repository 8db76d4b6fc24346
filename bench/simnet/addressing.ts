/**
 * Names and addresses private to one run: namespaces are named gf<pid in hex>-…, and machines get a
 * 10.x.y.0/24 that overlaps nothing on the host (it only exists inside the run's namespaces anyway;
 * avoiding the host's ranges keeps logs and `ip` output unambiguous).
 */

export interface Subnet {
  /** The first three octets, e.g. "10.77.3". */
  base: string;
  cidr: string;
}

export const runPrefix = (pid: number): string => `gf${pid.toString(16)}`;

/**
 * An IPv4 CIDR ("10.1.2.0/24", or a bare address) as a 32-bit number and a prefix length; undefined if it is
 * not one.
 */
function parseCidr(cidr: string): { address: number; bits: number } | undefined {
  const m = /^(\d+)\.(\d+)\.(\d+)\.(\d+)(?:\/(\d+))?$/.exec(cidr.trim());
  if (!m) return undefined;
  const octets = m.slice(1, 5).map(Number);
  const bits = m[5] === undefined ? 32 : Number(m[5]);
  if (octets.some((octet) => octet > 255) || bits > 32) return undefined;
  return { address: octets.reduce((a, octet) => a * 256 + octet, 0), bits };
}

/** Whether two IPv4 CIDRs share any address. */
export function overlaps(a: string, b: string): boolean {
  const x = parseCidr(a);
  const y = parseCidr(b);
  if (!x || !y) return false;
  const span = 2 ** (32 - Math.min(x.bits, y.bits));
  return Math.floor(x.address / span) === Math.floor(y.address / span);
}

/**
 * A /24 in 10.64.0.0–10.127.255.0 picked from `seed` (the pid), stepping past any that overlaps `hostCidrs`.
 */
export function pickSubnet(seed: number, hostCidrs: readonly string[]): Subnet {
  const candidates = 64 * 256;
  for (let k = 0; k < candidates; k++) {
    const n = (seed + k * 7919) % candidates;
    const base = `10.${64 + (n >> 8)}.${n & 255}`;
    const cidr = `${base}.0/24`;
    if (!hostCidrs.some((h) => overlaps(h, cidr))) return { base, cidr };
  }
  throw new Error('no 10.x.y.0/24 is free on this host for the simulated cluster');
}
