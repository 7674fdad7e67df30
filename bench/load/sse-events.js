// The SSE sink's counter (bench/load/sink.js `sse` mode), apart so that test/e2e/bench-harness.e2e.ts can feed it
// any TCP chunking of a stream.
'use strict';

const EVENT = Buffer.from('\ndata:');

/**
 * Counts SSE events in a response body, chunk by chunk as TCP delivers it: each `data:` at the start of a line is
 * one event (one `data:` line per event, as the gateway writes them; JSON has no raw newline; comments and `id:`
 * lines do not count). A native indexOf per chunk; a match split across two chunks is found in the few bytes
 * around the seam. The body starts after the response head, whose last line break precedes the first chunk.
 */
function sseCounter(onEvent) {
  let tail = Buffer.from('\n');
  return (chunk) => {
    const seam = Buffer.concat([tail, chunk.subarray(0, EVENT.length - 1)]);
    for (let at = seam.indexOf(EVENT); at !== -1 && at < tail.length; at = seam.indexOf(EVENT, at + 1)) onEvent();
    for (let at = chunk.indexOf(EVENT); at !== -1; at = chunk.indexOf(EVENT, at + EVENT.length)) onEvent();
    tail = chunk.length >= EVENT.length - 1 ? chunk.subarray(chunk.length - (EVENT.length - 1)) : Buffer.concat([tail, chunk]).subarray(-(EVENT.length - 1));
  };
}

module.exports = { sseCounter };
