import { readFileSync } from 'node:fs';
import { load as loadYaml } from 'js-yaml';
import type { ConfigProblem } from './config';

/** Who may subscribe to a namespace's channels, beyond its roles (docs/namespaces.md). */
export type SubscribeMode = 'any' | 'claim' | 'proxy';

/** One channel namespace, as configured (CHANNELS_FILE) or built in. Every field is resolved: no defaults left. */
export interface NamespaceConfig {
  /** `chat`, `ward`, …: channels are `<name>:<channel name>`; a `single` namespace is one channel, its name. */
  readonly name: string;
  /** `alerts` only: the namespace is one channel named like it (the fixed Redis names of docs/cluster.md). */
  readonly single: boolean;
  /** Messages kept per channel; 0: live only (no ids, no resume). */
  readonly historySize: number;
  /** A channel nobody published to for this long loses its history and epoch, in both modes; 0: never. */
  readonly historyTtlMs: number;
  /** Members tracked cluster-wide. */
  readonly presence: boolean;
  /** Joins and leaves announced to members. */
  readonly joinLeave: boolean;
  readonly subscribe: { readonly mode: SubscribeMode; readonly roles: readonly string[] };
  /** `server`: the server API and Redis only; `members`: subscribers may publish from the client. */
  readonly publish: 'server' | 'members';
  /** Largest message published on its channels (at most MAX_PUBLISH_BYTES). */
  readonly maxMessageBytes: number;
}

/** The variables the built-in namespaces take their defaults from. */
export interface NamespaceDefaults {
  historySize: number;
  historyTtlMs: number;
  maxPublishBytes: number;
}

/** Namespace names: short, lowercase, so they make bounded metric labels and readable Redis keys. */
export const NAMESPACE_NAME = /^[a-z][a-z0-9_-]{0,31}$/;
/** Roles as tokens carry them: the same characters a `role` claim may hold in practice. */
const ROLE = /^[A-Za-z0-9_.:-]{1,64}$/;

/**
 * The built-in set (v2 behaviour, except that signaling is `claim`: a token must name its consultation).
 * A namespace a CHANNELS_FILE names replaces the built-in one of that name.
 */
export function builtInNamespaces(d: NamespaceDefaults): NamespaceConfig[] {
  const base = { single: false, presence: false, joinLeave: false, maxMessageBytes: d.maxPublishBytes };
  return [
    // Kept without expiry: other services XADD to it directly, and an authority coming back after a weekend
    // resumes from where it left.
    { ...base, name: 'alerts', single: true, historySize: d.historySize, historyTtlMs: 0, subscribe: { mode: 'any', roles: ['authority', 'admin'] }, publish: 'server' },
    { ...base, name: 'user', historySize: d.historySize, historyTtlMs: d.historyTtlMs, subscribe: { mode: 'any', roles: [] }, publish: 'server' },
    { ...base, name: 'chat', historySize: d.historySize, historyTtlMs: d.historyTtlMs, presence: true, joinLeave: true, subscribe: { mode: 'any', roles: [] }, publish: 'members' },
    { ...base, name: 'signaling', historySize: 0, historyTtlMs: 0, presence: true, joinLeave: true, subscribe: { mode: 'claim', roles: ['doctor', 'patient'] }, publish: 'members' },
  ];
}

const KEYS = ['history', 'presence', 'join_leave', 'subscribe', 'publish', 'max_message_bytes'];
const HISTORY_KEYS = ['size', 'ttl_s'];
const SUBSCRIBE_KEYS = ['mode', 'roles'];
/** Namespaces are channel families, each a metric label value: a few dozen in practice, never thousands. */
const MAX_NAMESPACES = 256;
/** 30 days: a longer retention is a database's job, not a stream's. */
const MAX_TTL_S = 30 * 86_400;

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Reads CHANNELS_FILE (YAML, or JSON, which is YAML too) and merges it over the built-ins. Every problem is one
 * `CHANNELS_FILE: <where>: <problem>` line; the file's contents are never echoed beyond a namespace or key name.
 */
export function loadNamespaces(file: string | undefined, d: NamespaceDefaults): { namespaces: NamespaceConfig[]; problems: ConfigProblem[]; warnings: string[] } {
  const builtIn = builtInNamespaces(d);
  const problems: ConfigProblem[] = [];
  const warnings: string[] = [];
  if (file === undefined) return { namespaces: builtIn, problems, warnings };
  const problem = (where: string, text: string) => problems.push({ variable: 'CHANNELS_FILE', problem: where ? `${where}: ${text}` : text });
  let raw: string;
  try {
    raw = readFileSync(file, 'utf8');
  } catch (error) {
    problem('', `cannot read the file (${(error as NodeJS.ErrnoException).code ?? 'error'}); set it to a readable YAML or JSON file`);
    return { namespaces: builtIn, problems, warnings };
  }
  let parsed: unknown;
  try {
    parsed = loadYaml(raw);
  } catch (error) {
    const { mark, reason } = error as { mark?: { line: number; column: number }; reason?: string };
    // The parser's reason names the rule ("duplicated mapping key"), never the file's text.
    const why = typeof reason === 'string' && /^[a-z ,]{1,80}$/i.test(reason) ? `: ${reason}` : '';
    problem('', `is not valid YAML or JSON${mark ? ` (line ${mark.line + 1}, column ${mark.column + 1})` : ''}${why}`);
    return { namespaces: builtIn, problems, warnings };
  }
  if (!isRecord(parsed) || !isRecord(parsed.namespaces)) {
    problem('', 'must hold a "namespaces" map, e.g. namespaces: { chat: { history: { size: 1000, ttl_s: 86400 } } }');
    return { namespaces: builtIn, problems, warnings };
  }
  for (const key of Object.keys(parsed)) if (key !== 'namespaces') problem(key, 'unknown key (the file holds "namespaces")');
  if (Object.keys(parsed.namespaces).length > MAX_NAMESPACES) {
    problem('namespaces', `at most ${MAX_NAMESPACES} namespaces (a namespace is a family of channels: rooms, wards and users are names within one)`);
    return { namespaces: builtIn, problems, warnings };
  }
  const byName = new Map(builtIn.map((ns) => [ns.name, ns]));
  for (const [name, entry] of Object.entries(parsed.namespaces)) {
    const at = `namespaces.${name.slice(0, 40)}`;
    if (!NAMESPACE_NAME.test(name)) {
      problem(at, 'a namespace name is 1-32 lowercase letters, digits, _ or -, starting with a letter');
      continue;
    }
    const built = parseEntry(name, entry ?? {}, d, (where, text) => problem(where ? `${at}.${where}` : at, text));
    if (!built) continue;
    if (name === 'signaling' && built.subscribe.mode === 'any') {
      warnings.push('CHANNELS_FILE sets namespace signaling to subscribe mode "any": any doctor or patient token can take a seat in any consultation. Use "claim" (the default) or "proxy".');
    }
    byName.set(name, built);
  }
  return { namespaces: [...byName.values()], problems, warnings };
}

function parseEntry(name: string, entry: unknown, d: NamespaceDefaults, problem: (where: string, text: string) => void): NamespaceConfig | undefined {
  let problems = 0;
  const report = (where: string, text: string) => {
    problems++;
    problem(where, text);
  };
  if (!isRecord(entry)) {
    report('', 'must be a map of options (history, presence, join_leave, subscribe, publish, max_message_bytes)');
    return undefined;
  }
  for (const key of Object.keys(entry)) if (!KEYS.includes(key)) report(key.slice(0, 40), `unknown option (known: ${KEYS.join(', ')})`);
  const whole = (where: string, value: unknown, min: number, max: number, fallback: number): number => {
    if (value === undefined) return fallback;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
      report(where, `must be a whole number between ${min} and ${max}`);
      return fallback;
    }
    return value;
  };
  const flag = (where: string, value: unknown): boolean => {
    if (value === undefined) return false;
    if (typeof value !== 'boolean') report(where, 'must be true or false');
    return value === true;
  };
  let historySize = 0;
  let historyTtlMs = d.historyTtlMs;
  if (entry.history !== undefined) {
    if (!isRecord(entry.history)) report('history', 'must be a map: { size: <messages>, ttl_s: <seconds> }');
    else {
      for (const key of Object.keys(entry.history)) if (!HISTORY_KEYS.includes(key)) report(`history.${key.slice(0, 40)}`, `unknown option (known: ${HISTORY_KEYS.join(', ')})`);
      historySize = whole('history.size', entry.history.size, 0, 10_000_000, 0);
      // 0: never expires (as HISTORY_TTL_MS=0); otherwise at least a second.
      if (entry.history.ttl_s === 0) historyTtlMs = 0;
      else if (entry.history.ttl_s !== undefined) historyTtlMs = whole('history.ttl_s', entry.history.ttl_s, 1, MAX_TTL_S, d.historyTtlMs / 1000) * 1000;
    }
  }
  let mode: SubscribeMode = 'any';
  let roles: string[] = [];
  if (entry.subscribe !== undefined) {
    if (!isRecord(entry.subscribe)) report('subscribe', 'must be a map: { mode: any|claim|proxy, roles: [..] }');
    else {
      for (const key of Object.keys(entry.subscribe)) if (!SUBSCRIBE_KEYS.includes(key)) report(`subscribe.${key.slice(0, 40)}`, `unknown option (known: ${SUBSCRIBE_KEYS.join(', ')})`);
      const m = entry.subscribe.mode;
      if (m !== undefined && m !== 'any' && m !== 'claim' && m !== 'proxy') report('subscribe.mode', 'must be any, claim or proxy');
      else if (m !== undefined) mode = m;
      const r = entry.subscribe.roles;
      if (r !== undefined && (!Array.isArray(r) || !r.every((role) => typeof role === 'string' && ROLE.test(role)))) {
        report('subscribe.roles', 'must be a list of role names (letters, digits, _ . : -), e.g. [doctor, nurse]');
      } else if (r !== undefined) roles = [...new Set(r as string[])];
    }
  }
  const publish = entry.publish ?? 'server';
  if (publish !== 'server' && publish !== 'members') report('publish', 'must be server or members');
  const built: NamespaceConfig = {
    name,
    single: name === 'alerts',
    historySize,
    historyTtlMs: historySize === 0 ? 0 : historyTtlMs,
    presence: flag('presence', entry.presence),
    joinLeave: flag('join_leave', entry.join_leave),
    subscribe: { mode, roles },
    publish: publish === 'members' ? 'members' : 'server',
    maxMessageBytes: whole('max_message_bytes', entry.max_message_bytes, 2, d.maxPublishBytes, d.maxPublishBytes),
  };
  if (built.joinLeave && !built.presence) report('join_leave', 'needs presence: true (joins and leaves are changes of the member list)');
  if (name === 'alerts' && built.publish === 'members') report('publish', 'alerts is published by the server only (server API, Redis)');
  // user:<sub> reaches its user's alerts connections as alert frames, which carry no sender: a member's message
  // there could not be delivered.
  if (name === 'user' && built.publish === 'members') report('publish', 'user:<sub> is published by the server only (server API, Redis)');
  // An entry with any problem is not used: the process stops with every problem listed.
  return problems === 0 ? built : undefined;
}
