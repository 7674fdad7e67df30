// A plain EventSource no one here wrote (the `eventsource` npm package) in its own process: it prints one JSON line
// per event it gives its user, so a test sees exactly what an application would. Reconnects, and the
// Last-Event-ID it sends when it does, are the library's own.
// Usage: node eventsource-reader.mjs <url> [token]
import { EventSource } from 'eventsource';

const [url, token] = process.argv.slice(2);
const source = new EventSource(url, {
  fetch: (input, init) => fetch(input, { ...init, headers: { ...init?.headers, ...(token ? { Authorization: `Bearer ${token}` } : {}) } }),
});
const print = (line) => process.stdout.write(`${JSON.stringify(line)}\n`);
source.onopen = () => print({ event: 'open' });
source.onmessage = (message) => print({ event: 'message', lastEventId: message.lastEventId, data: JSON.parse(message.data) });
source.onerror = (error) => print({ event: 'error', message: error?.message ?? '', readyState: source.readyState });
// The library unrefs its reconnect timer: an application keeps the process alive; so does this reader.
const alive = setInterval(() => undefined, 60_000);
process.on('SIGTERM', () => {
  source.close();
  clearInterval(alive);
  process.exit(0);
});
