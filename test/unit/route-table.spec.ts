import { RouteTable } from '../../src/upgrade/route-table';

describe('RouteTable', () => {
  const table = new RouteTable<string>();
  table.add('/ws/chat/:room', 'chat');
  table.add('/ws/signaling/:consultationId/:userType', 'signaling');
  table.add('/api/alerts/subscribe', 'alerts');
  table.add('/ws/chat/lobby', 'lobby');

  it('matches literal paths and patterns with params', () => {
    expect(table.match('/api/alerts/subscribe')).toEqual({ target: 'alerts', pattern: '/api/alerts/subscribe', params: {} });
    expect(table.match('/ws/signaling/c-1/doctor')).toEqual({
      target: 'signaling',
      pattern: '/ws/signaling/:consultationId/:userType',
      params: { consultationId: 'c-1', userType: 'doctor' },
    });
  });

  it('decodes params and prefers the more literal route', () => {
    expect(table.match('/ws/chat/caf%C3%A9')?.params).toEqual({ room: 'café' });
    expect(table.match('/ws/chat/lobby')?.target).toBe('lobby');
    expect(table.match('/ws/chat/%E0%A4%A')?.params).toEqual({ room: '%E0%A4%A' });
  });

  it('tolerates a trailing slash but not extra or missing segments', () => {
    expect(table.match('/api/alerts/subscribe/')?.target).toBe('alerts');
    expect(table.match('/ws/chat')).toBeUndefined();
    expect(table.match('/ws/chat/a/b')).toBeUndefined();
  });

  it('explains a doubled prefix', () => {
    expect(table.explainMiss('/api/api/alerts/subscribe')).toMatch(/^the path repeats the prefix \/api \(\/api\/api\/...\): did you mean \/api\/alerts\/subscribe\?/);
    // The endpoint's pattern, never the request's own segments (SPEC: no answer echoes the request URL).
    expect(table.explainMiss('/ws/ws/chat/x')).toMatch(/did you mean \/ws\/chat\/:room\?/);
    expect(table.explainMiss('/ws/ws/chat/%3Cscript%3E')).not.toContain('script');
    expect(table.explainMiss('/ws/chat/secret/secret')).not.toContain('secret');
  });

  it('lists the known paths for any other miss', () => {
    expect(table.explainMiss('/nope')).toBe(
      'no WebSocket endpoint at this path; known WebSocket paths: /api/alerts/subscribe, /ws/chat/:room, /ws/chat/lobby, /ws/signaling/:consultationId/:userType',
    );
  });

  it('rejects invalid and duplicate patterns', () => {
    expect(() => table.add('chat', 'x')).toThrow(/invalid route pattern/);
    expect(() => table.add('/ws/chat/:room/', 'x')).toThrow(/duplicate route/);
  });
});
