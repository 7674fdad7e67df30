import { iceServersFrame, turnCredential } from '../../src/signaling/turn-credentials';

// Known answers computed outside this code base, so a wrong HMAC, encoding or key order cannot agree with itself:
//   printf %s "1700003600:doctor-42" | openssl dgst -sha1 -hmac 'coturn-static-auth-secret' -binary | base64
//   python3 -c "import hmac,hashlib,base64;print(base64.b64encode(hmac.new('clé-secrète'.encode(),
//     '1700000060:jürgen:ward-7'.encode(), hashlib.sha1).digest()).decode())"
const NOW_MS = 1_700_000_000_000;

describe('TURN REST API credentials (coturn use-auth-secret)', () => {
  it('signs "<expiry unix s>:<sub>" with base64 HMAC-SHA1 of the secret', () => {
    expect(turnCredential('coturn-static-auth-secret', 'doctor-42', 3600, NOW_MS)).toEqual({
      username: '1700003600:doctor-42',
      credential: 'tYNr37w8YFxPwx7kYlKNKVRELUY=',
    });
  });

  it('hashes UTF-8 bytes of secret and username, and keeps a colon inside the sub (coturn reads the expiry before the first one)', () => {
    expect(turnCredential('clé-secrète', 'jürgen:ward-7', 60, NOW_MS + 999)).toEqual({
      username: '1700000060:jürgen:ward-7',
      credential: 'i+D7d+cIh3w/S4PQ8HcqDO8dFFU=',
    });
  });

  it('builds the ice-servers frame: the configured URLs, a credential for the principal, and the TTL', () => {
    const turn = { secret: 'coturn-static-auth-secret', urls: ['turn:turn.example.com:3478?transport=udp', 'turns:turn.example.com:5349?transport=tcp'], ttlSeconds: 3600 };
    const frame = iceServersFrame(turn, { sub: 'doctor-42' }, NOW_MS);
    expect(frame).toEqual({
      type: 'ice-servers',
      iceServers: [{ urls: turn.urls, username: '1700003600:doctor-42', credential: 'tYNr37w8YFxPwx7kYlKNKVRELUY=' }],
      ttl_s: 3600,
    });
    // A copy: a caller changing its frame cannot change the configuration.
    expect(frame.iceServers[0].urls).not.toBe(turn.urls);
    expect(JSON.stringify(frame)).not.toContain(turn.secret);
  });
});
