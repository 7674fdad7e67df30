import { extractToken, parseProtocols } from '../../src/auth/token-extractor';

const q = (s: string) => new URLSearchParams(s);

describe('extractToken', () => {
  it('reads Authorization: Bearer, the bearer subprotocol and ?token=, in that order', () => {
    expect(extractToken({ authorization: 'Bearer aaa' }, q('token=ccc'), ['bearer', 'bbb'])).toEqual({ token: 'aaa', source: 'header' });
    expect(extractToken({}, q('token=ccc'), ['bearer', 'bbb'])).toEqual({ token: 'bbb', source: 'subprotocol' });
    expect(extractToken({}, q('token=ccc'), [])).toEqual({ token: 'ccc', source: 'query' });
    expect(extractToken({ authorization: 'bearer   aaa ' }, undefined)).toEqual({ token: 'aaa', source: 'header' });
  });

  it('explains a present but unusable location', () => {
    expect(extractToken({ authorization: 'Basic abc' }, undefined)).toMatchObject({ token: undefined, hint: expect.stringMatching(/Bearer <jwt>/) });
    expect(extractToken({}, undefined, ['bearer'])).toMatchObject({ token: undefined, hint: expect.stringMatching(/followed by the token/) });
    expect(extractToken({}, q('token='))).toMatchObject({ token: undefined, hint: expect.stringMatching(/empty/) });
    expect(extractToken({}, q(''))).toMatchObject({ token: undefined, hint: expect.stringMatching(/\?token=/) });
  });

  it('parses the subprotocol header', () => {
    expect(parseProtocols('bearer, a.b.c')).toEqual(['bearer', 'a.b.c']);
    expect(parseProtocols(undefined)).toEqual([]);
    expect(parseProtocols(' ,x,')).toEqual(['x']);
  });
});
