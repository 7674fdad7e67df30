import type { IncomingMessage } from 'node:http';
import { loadConfig } from '../../src/config/config';
import { AddressLimiter, ClientAddress, limitKey } from '../../src/upgrade/client-address';

const request = (peer: string, forwarded?: string) =>
  ({ socket: { remoteAddress: peer }, headers: forwarded === undefined ? {} : { 'x-forwarded-for': forwarded } }) as unknown as IncomingMessage;
const behind = (proxies: string) => new ClientAddress(loadConfig({ TRUSTED_PROXIES: proxies }).config.trustedProxies);

describe('ClientAddress', () => {
  it('is the TCP peer when no proxy is trusted, whatever X-Forwarded-For says', () => {
    expect(new ClientAddress([]).of(request('203.0.113.9', '1.2.3.4'))).toBe('203.0.113.9');
    expect(behind('10.0.0.0/8').of(request('203.0.113.9', '1.2.3.4'))).toBe('203.0.113.9');
  });

  it('behind trusted proxies, is the right-most address that is not one of them', () => {
    const addresses = behind('10.0.0.0/8');
    expect(addresses.of(request('10.1.2.3', '198.51.100.7'))).toBe('198.51.100.7');
    // What the client wrote on the left is never believed.
    expect(addresses.of(request('10.1.2.3', '1.1.1.1, 198.51.100.7, 10.9.9.9'))).toBe('198.51.100.7');
    expect(addresses.of(request('::ffff:10.1.2.3', '198.51.100.7'))).toBe('198.51.100.7');
    // Garbage stops the walk at the last good hop.
    expect(addresses.of(request('10.1.2.3', '198.51.100.7, junk'))).toBe('10.1.2.3');
    expect(addresses.of(request('10.1.2.3'))).toBe('10.1.2.3');
  });
});

describe('limitKey and AddressLimiter', () => {
  it('limits IPv6 clients per /64 and IPv4 per address', () => {
    expect(limitKey('2001:db8:1:2:aaaa::1')).toBe(limitKey('2001:db8:1:2:ffff:1:2:3'));
    expect(limitKey('2001:db8:1:2::1')).not.toBe(limitKey('2001:db8:1:3::1'));
    expect(limitKey('192.0.2.1')).toBe('192.0.2.1');
  });

  it('counts per second window and per address', () => {
    const limiter = new AddressLimiter(2);
    expect([limiter.take('a', 1000), limiter.take('a', 1001), limiter.take('a', 1002), limiter.take('b', 1003)]).toEqual([true, true, false, true]);
    expect(limiter.retryAfter(1500)).toBe(1);
    expect(limiter.take('a', 2000)).toBe(true);
  });
});
