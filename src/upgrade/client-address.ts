import { BlockList, isIP } from 'node:net';
import type { IncomingMessage } from 'node:http';
import type { TrustedProxy } from '../config/config';

/** `::ffff:10.0.0.1` (an IPv4 peer on a dual-stack socket) is `10.0.0.1`. */
function plain(address: string): string {
  return address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
}

/**
 * The address a request comes from: the TCP peer, or, when the peer is one of TRUSTED_PROXIES, the
 * right-most address of `X-Forwarded-For` that is not itself a trusted proxy (the left part of that header is
 * whatever the client wrote, so it is never believed).
 */
export class ClientAddress {
  private readonly trusted: BlockList | undefined;

  constructor(proxies: readonly TrustedProxy[]) {
    if (!proxies.length) return;
    this.trusted = new BlockList();
    for (const { address, prefix, family } of proxies) this.trusted.addSubnet(address, prefix, family);
  }

  of(req: IncomingMessage): string {
    const peer = plain(req.socket.remoteAddress ?? '');
    if (!this.trusted || !this.isTrusted(peer)) return peer;
    const header = req.headers['x-forwarded-for'];
    if (typeof header !== 'string') return peer;
    const hops = header.split(',');
    let client = peer;
    for (let i = hops.length - 1; i >= 0; i--) {
      const hop = plain(hops[i].trim());
      if (!isIP(hop)) break; // garbage: trust nothing further left
      client = hop;
      if (!this.isTrusted(hop)) break;
    }
    return client;
  }

  private isTrusted(address: string): boolean {
    const family = isIP(address);
    return family !== 0 && this.trusted!.check(address, family === 6 ? 'ipv6' : 'ipv4');
  }
}

/** The key an address is limited under: IPv6 clients get a /64 each (one host usually holds the whole /64). */
export function limitKey(address: string): string {
  if (isIP(address) !== 6) return address;
  const [head] = address.split('%');
  const expanded = head.includes('::')
    ? (() => {
        const [left, right] = head.split('::');
        const l = left ? left.split(':') : [];
        const r = right ? right.split(':') : [];
        return [...l, ...Array(8 - l.length - r.length).fill('0'), ...r];
      })()
    : head.split(':');
  return `${expanded.slice(0, 4).map((h) => h.toLowerCase().replace(/^0+(?=.)/, '')).join(':')}::/64`;
}

/** Most addresses tracked in one window; beyond it, new addresses share one count (memory stays bounded). */
const MAX_TRACKED = 100_000;
const OVERFLOW = '(overflow)';

/**
 * MAX_UPGRADES_PER_IP_PER_SEC: upgrades per client address per one-second window. One map, emptied when the
 * window turns, so memory is bounded by the addresses seen in one second (at most 100k; beyond that they
 * share a count).
 */
export class AddressLimiter {
  private counts = new Map<string, number>();
  private windowStart = 0;

  constructor(private readonly perSecond: number) {}

  /** Counts one upgrade from `key`; false when it is over the limit. */
  take(key: string, now: number): boolean {
    if (now - this.windowStart >= 1000) {
      this.counts.clear();
      this.windowStart = now;
    }
    const slot = this.counts.size >= MAX_TRACKED && !this.counts.has(key) ? OVERFLOW : key;
    const count = (this.counts.get(slot) ?? 0) + 1;
    this.counts.set(slot, count);
    return count <= this.perSecond;
  }

  /** Seconds until the window turns (for Retry-After). */
  retryAfter(now: number): number {
    return Math.max(1, Math.ceil((1000 - (now - this.windowStart)) / 1000));
  }
}
