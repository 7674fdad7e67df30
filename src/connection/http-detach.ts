import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';

/**
 * Node's HTTP parser as `node:http` leaves it on a server socket (`socket.parser`): not a public API. These are
 * the members Node's own upgrade path uses to let a socket go (lib/_http_server.js `onParserExecuteCommon`,
 * `unconsume`; lib/_http_common.js `freeParser`), present on Node 20 and 22.
 */
interface HttpParser {
  incoming: unknown;
  _consumed?: boolean;
  unconsume(): void;
  finish(): unknown;
  remove(): void;
  close(): void;
}

/**
 * The listeners `node:http` binds to each socket it serves (lib/_http_server.js `connectionListenerInternal`), by
 * the names their functions have on Node 20 and 22: the socket's own are bound (`state.onData` is
 * `socketOnData.bind(…)`), the shared ones are plain functions. The first five must all be there for the socket to
 * be let go; the others are removed when present.
 */
const REQUIRED: readonly [string, string][] = [
  ['data', 'bound socketOnData'],
  ['end', 'bound socketOnEnd'],
  ['close', 'bound socketOnClose'],
  ['drain', 'bound socketOnDrain'],
  ['error', 'socketOnError'],
];
const OPTIONAL: readonly [string, string][] = [
  ['timeout', 'socketOnTimeout'],
  ['resume', 'onSocketResume'],
  ['pause', 'onSocketPause'],
];

type Listener = (...args: unknown[]) => void;

function findListener(socket: Duplex, event: string, name: string): Listener | undefined {
  const found = socket.listeners(event).filter((fn) => (fn as Listener).name === name);
  return found.length === 1 ? (found[0] as Listener) : undefined;
}

/**
 * Takes a socket off `node:http` once a response's head is written and everything after it goes straight to the
 * socket (an SSE stream), the way Node lets go of an upgraded socket: the server's listeners removed, its HTTP
 * parser stopped, taken out of the server's connection list and freed, the response detached. Nothing of
 * `node:http` then holds the request or the response (about 3 KB of heap and the parser's native state per
 * socket). From then on the caller owns the socket: it must read it (to see the peer's end), handle its errors,
 * and end it; `server.closeAllConnections()` no longer sees it, as it does not see an upgraded one.
 *
 * Call it outside the parser's own callbacks (the request handler may run inside them: a parser must not be freed
 * while it executes; Node defers the same with setImmediate). True when the socket was let go. False, and nothing
 * changed, when something is not as on Node 20 and 22 (another Node's internals, a request whose body has not all
 * arrived, a response not on this socket): the socket then stays on `node:http` as before, which costs memory only.
 */
export function detachFromHttp(req: IncomingMessage, res: ServerResponse, socket: Duplex): boolean {
  const parser = (socket as Duplex & { parser?: HttpParser | null }).parser;
  if (!parser || parser.incoming !== req || !req.complete) return false;
  if (typeof parser.unconsume !== 'function' || typeof parser.finish !== 'function' || typeof parser.remove !== 'function' || typeof parser.close !== 'function') return false;
  const response = res as ServerResponse & { detachSocket?: (socket: Duplex) => void };
  if ((socket as Duplex & { _httpMessage?: unknown })._httpMessage !== res || typeof response.detachSocket !== 'function') return false;
  const required = REQUIRED.map(([event, name]) => [event, findListener(socket, event, name)] as const);
  if (required.some(([, fn]) => fn === undefined)) return false;
  for (const [event, fn] of required) socket.removeListener(event, fn!);
  for (const [event, name] of OPTIONAL) {
    const fn = findListener(socket, event, name);
    if (fn) socket.removeListener(event, fn);
  }
  // unconsume(parser, socket), parser.finish(), freeParser(): the socket's reads come back to the stream, the
  // parser leaves the server's connection list (closeAllConnections, the request timeouts) and its native
  // object is deleted (what freeParser does when its pool is full) rather than pooled, which needs _http_common.
  if (parser._consumed) parser.unconsume();
  parser._consumed = false;
  parser.finish();
  parser.remove();
  parser.close();
  (socket as Duplex & { parser?: HttpParser | null }).parser = null;
  response.detachSocket(socket);
  return true;
}
