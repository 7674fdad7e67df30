import { parseTarget } from '../../src/upgrade/handshake';

// parseTarget skips the URL constructor for plain paths; it must answer exactly what URL would.
const viaUrl = (raw: string) => {
  const url = new URL(raw, 'http://gateway.invalid');
  return { pathname: url.pathname, query: [...url.searchParams] };
};

describe('parseTarget', () => {
  it.each([
    '/api/alerts/subscribe',
    '/api/alerts/subscribe?token=eyJ.abc-_.x&since=1700000000000-3',
    '/ws/chat/room-1',
    '/ws/chat/room_1?',
    '/ws/signaling/c-42/doctor?token=a%20b+c',
    '/ws/chat/a:b@c~!$&\'()*+,;=',
    '/api/./alerts/subscribe',
    '/api/alerts/../alerts/subscribe',
    '/ws/chat/%72oom',
    '/ws/chat/r%C3%A9union',
    '/ws/chat/ä',
    '/ws/chat/with space',
    '/ws/chat/a\\b',
    '//api/alerts/subscribe',
    '/api/alerts/subscribe#frag',
    '/api/alerts/subscribe?token=x#frag',
    '/a/b.c?x=1&x=2',
    '/',
    '',
  ])('%j gives the same path and query as URL', (raw) => {
    const fast = parseTarget(raw || undefined);
    expect({ pathname: fast.pathname, query: [...fast.query] }).toEqual(viaUrl(raw || '/'));
  });

  it('refuses what URL cannot parse with 400', () => {
    expect(() => parseTarget('http://[bad')).toThrow(expect.objectContaining({ status: 400, error: 'bad_request' }));
  });
});
