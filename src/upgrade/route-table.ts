export interface RouteMatch<T> {
  target: T;
  pattern: string;
  params: Record<string, string>;
}

interface Route<T> {
  pattern: string;
  segments: string[];
  statics: number;
  target: T;
}

function split(path: string): string[] {
  return path.split('/').filter(Boolean);
}

function matchSegments(segments: string[], parts: string[]): Record<string, string> | undefined {
  if (parts.length !== segments.length) return undefined;
  const params: Record<string, string> = {};
  for (let i = 0; i < segments.length; i++) {
    const segment = segments[i];
    if (segment.startsWith(':')) {
      let value: string;
      try {
        value = decodeURIComponent(parts[i]);
      } catch {
        value = parts[i];
      }
      params[segment.slice(1)] = value;
    } else if (segment !== parts[i]) {
      return undefined;
    }
  }
  return params;
}

/**
 * Path patterns with `:param` segments (`/ws/chat/:room`). A pattern with more literal segments wins over a
 * more generic one. Also explains misses: the known paths, and a doubled prefix such as `/api/api/...`.
 */
export class RouteTable<T> {
  private readonly routes: Route<T>[] = [];
  /**
   * Patterns without params, by their exact path, with their (immutable) match: every upgrade to such a path
   * is one Map lookup instead of splitting the path and building a params object and a match for it.
   */
  private readonly exact = new Map<string, RouteMatch<T>>();

  add(pattern: string, target: T): void {
    const segments = split(pattern);
    if (!pattern.startsWith('/') || segments.length === 0) throw new Error(`invalid route pattern "${pattern}"`);
    const normalised = `/${segments.join('/')}`;
    if (this.routes.some((r) => r.pattern === normalised)) throw new Error(`duplicate route "${normalised}"`);
    this.routes.push({ pattern: normalised, segments, statics: segments.filter((s) => !s.startsWith(':')).length, target });
    this.routes.sort((a, b) => b.statics - a.statics);
    if (segments.every((s) => !s.startsWith(':'))) {
      this.exact.set(normalised, Object.freeze({ target, pattern: normalised, params: Object.freeze({}) }));
    }
  }

  match(pathname: string): RouteMatch<T> | undefined {
    // A literal pattern always wins over one with params (more literal segments), so an exact hit is the answer.
    const exact = this.exact.get(pathname);
    if (exact) return exact;
    const parts = split(pathname);
    for (const route of this.routes) {
      const params = matchSegments(route.segments, parts);
      if (params) return { target: route.target, pattern: route.pattern, params };
    }
    return undefined;
  }

  patterns(): string[] {
    return this.routes.map((r) => r.pattern).sort();
  }

  /** Human explanation for a path that matched nothing. */
  explainMiss(pathname: string): string {
    const known = `known WebSocket paths: ${this.patterns().join(', ')}`;
    const parts = split(pathname);
    for (let i = 0; i + 1 < parts.length; i++) {
      if (parts[i] !== parts[i + 1]) continue;
      const fixed = [...parts.slice(0, i), ...parts.slice(i + 1)];
      const match = this.match(`/${fixed.join('/')}`);
      if (match) {
        // Named by the endpoint's pattern, never by the request's own segments (no answer echoes the URL): the
        // prefix only when every segment of it is a literal of that pattern.
        const literal = split(match.pattern);
        const ours = parts.slice(0, i + 1).every((part, k) => literal[k] === part && !part.startsWith(':'));
        const prefix = ours ? `/${parts.slice(0, i + 1).join('/')}` : undefined;
        const repeated = prefix ? `the path repeats the prefix ${prefix} (${prefix}${prefix}/...)` : 'the path repeats a segment';
        return `${repeated}: did you mean ${match.pattern}? (${known})`;
      }
    }
    return `no WebSocket endpoint at this path; ${known}`;
  }
}
