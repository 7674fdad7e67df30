import { connect, refusal } from '../support/clients';
import { embeddedDeployment } from '../support/deployment';
import { token } from '../support/tokens';

jest.setTimeout(30_000);

/**
 * One `sub` rule for the door and the server API (SPEC v3, the note under the server API table): a `sub` the
 * server API would refuse (control characters, over 256 bytes of UTF-8) is refused at the door with 401
 * token_invalid, so every connected user can be disconnected. Failed before: the door let such a user in and the
 * server API could not name it (400).
 */
describe('the sub rule', () => {
  it('refuses at the door a sub the server API could not disconnect, and admits one it can', async () => {
    const d = await embeddedDeployment();
    try {
      for (const sub of ['evil\nuser', 'nul\u0000byte', 'tab\there', 'del\u007f', 'é'.repeat(200)]) {
        const refused = await refusal(d.ws(0, '/api/alerts/subscribe'), { protocols: ['bearer', token({ sub, role: 'authority' })] });
        expect([JSON.stringify(sub).slice(0, 20), refused.status, refused.body.error]).toEqual([JSON.stringify(sub).slice(0, 20), 401, 'token_invalid']);
      }
      // At the limit (256 bytes, non-ASCII, spaces kept as they are): admitted, and the server API disconnects it.
      const sub = ` ${'é'.repeat(127)} `.slice(0, 128);
      expect(Buffer.byteLength(sub)).toBeLessThanOrEqual(256);
      const client = await connect(d.ws(0, '/api/alerts/subscribe'), { protocols: ['bearer', token({ sub, role: 'authority' })] });
      const res = await fetch(d.gateway.internal('/api/disconnect'), {
        method: 'POST',
        headers: { authorization: `Bearer ${token({ sub: 'ops', role: 'admin' })}`, 'content-type': 'application/json' },
        body: JSON.stringify({ user: sub }),
      });
      expect(res.status).toBe(202);
      expect((await client.closed).code).toBe(4003);
    } finally {
      await d.close();
    }
  });
});
