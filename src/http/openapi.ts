import { z } from 'zod';
import type { ApiRoute } from './json-api';

/** What every route may answer besides its own errors. */
const COMMON_ERRORS = [400, 401, 403, 404, 405];

const ERROR_TEXT: Record<number, string> = {
  400: '`bad_request`: the body, a parameter or Idempotency-Key is not as documented (the message says which)',
  401: '`token_missing`, `token_invalid`, `token_expired` or `token_revoked` (POST /api/revoke)',
  403: '`forbidden_role`: the token\'s role may not call this',
  404: '`unknown_path`',
  405: '`method_not_allowed`: the path answers other methods (`Allow` names them)',
  413: '`too_large`: the body is larger than MAX_PUBLISH_BYTES',
  415: '`unsupported_media_type`: send application/json',
  503: '`redis_unavailable` (cluster mode, Redis unreachable) or `keys_unavailable` (identity provider keys not loaded yet); retry after Retry-After',
};

function schemaOf(schema: z.ZodType, io: 'input' | 'output'): Record<string, unknown> {
  const json = z.toJSONSchema(schema, { target: 'draft-2020-12', io, unrepresentable: 'any' }) as Record<string, unknown>;
  delete json.$schema;
  return json;
}

/**
 * The OpenAPI 3.1 document of the server API, generated from the routes' own zod schemas (the ones that
 * validate the requests), so the document cannot drift from what the server accepts.
 */
/** A channel namespace as the document lists it (from the namespace registry: what this deployment serves). */
export interface NamespaceSummary {
  name: string;
  /** `alerts`, `user:<sub>`, `chat:<name>`, … */
  channel: string;
  history: number;
  ttl_s: number;
  presence: boolean;
  join_leave: boolean;
  subscribe: { mode: string; roles: string[] };
  publish: string;
  max_message_bytes: number;
}

export function openApiDocument(routes: readonly ApiRoute[], version: string, namespaces: readonly NamespaceSummary[] = []): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const route of routes) {
    const path = route.path.replace(/:(\w+)/g, '{$1}');
    const parameters: unknown[] = [];
    for (const [name, schema] of Object.entries(route.params ?? {})) {
      parameters.push({ name, in: 'path', required: true, schema: schemaOf(schema, 'input') });
    }
    if (route.query) {
      const json = schemaOf(route.query, 'input') as { properties?: Record<string, Record<string, unknown>>; required?: string[] };
      for (const [name, schema] of Object.entries(json.properties ?? {})) {
        const { description, ...rest } = schema;
        parameters.push({ name, in: 'query', required: (json.required ?? []).includes(name) && rest.default === undefined, ...(description ? { description } : {}), schema: rest });
      }
    }
    if (route.idempotent) {
      parameters.push({
        name: 'Idempotency-Key',
        in: 'header',
        required: false,
        description: 'Retries with the same key (per caller) within 5 minutes return the first answer and publish nothing new, cluster-wide.',
        schema: { type: 'string', pattern: '^[\\x21-\\x7e]{1,256}$' },
      });
    }
    const responses: Record<string, unknown> = {
      [String(route.status)]: { description: 'accepted', content: { 'application/json': { schema: schemaOf(route.response, 'output') } } },
    };
    for (const status of [...COMMON_ERRORS, ...(route.errors ?? [])]) {
      responses[String(status)] = { description: route.errorText?.[status] ?? ERROR_TEXT[status] ?? 'error', content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } };
    }
    paths[path] ??= {};
    paths[path][route.method.toLowerCase()] = {
      operationId: route.operationId,
      summary: route.summary,
      ...(route.description ? { description: route.description } : {}),
      security: [{ bearer: [] }],
      'x-roles': route.roles,
      ...(parameters.length ? { parameters } : {}),
      ...(route.body ? { requestBody: { required: true, content: { 'application/json': { schema: schemaOf(route.body, 'input') } } } } : {}),
      responses,
    };
  }
  paths['/api/openapi.json'] = {
    get: {
      operationId: 'openapi',
      summary: 'This document (no token needed)',
      security: [],
      responses: { '200': { description: 'the OpenAPI 3.1 document', content: { 'application/json': { schema: { type: 'object' } } } } },
    },
  };
  return {
    openapi: '3.1.0',
    info: {
      title: 'realtime-gateway server API',
      version,
      description:
        'Served on the internal port (INTERNAL_PORT) only. Every operation is cluster-wide. Auth: a JWT with role service or admin, as `Authorization: Bearer <jwt>`.' +
        (namespaces.length ? ` Channels on this deployment: ${namespaces.map((n) => n.channel).join(', ')} (x-namespaces; any other is 400 unknown_channel).` : ''),
      ...(namespaces.length ? { 'x-namespaces': namespaces } : {}),
    },
    servers: [{ url: '/' }],
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } },
      schemas: {
        Error: {
          type: 'object',
          required: ['error', 'message'],
          properties: { error: { type: 'string', description: 'a stable code' }, message: { type: 'string', description: 'what to do, for people' } },
          additionalProperties: false,
        },
      },
    },
    paths,
  };
}
