import { EventStreamParser, type StreamEvent } from '../../src/client/event-stream';

/** Feeds `chunks` in order and returns the events dispatched. */
function parse(...chunks: string[]): StreamEvent[] {
  const events: StreamEvent[] = [];
  const parser = new EventStreamParser((event) => events.push(event));
  for (const chunk of chunks) parser.push(chunk);
  return events;
}

describe('the SDK event-stream parser (WHATWG event stream interpretation)', () => {
  it('reads unnamed events with their id, and skips comments', () => {
    expect(parse(': hello\n\nid: c1.x\ndata: {"type":"welcome"}\n\n:\n\ndata: {"type":"pong"}\n\n')).toEqual([
      { data: '{"type":"welcome"}', id: 'c1.x' },
      { data: '{"type":"pong"}', id: 'c1.x' }, // the last id so far, as EventSource's lastEventId
    ]);
  });

  it('gives the same events however the bytes are split, with LF, CRLF or CR line ends', () => {
    const text = 'id: 7\ndata: {"a":1}\n\ndata: two\ndata: lines\n\n';
    const whole = parse(text);
    expect(whole).toEqual([
      { data: '{"a":1}', id: '7' },
      { data: 'two\nlines', id: '7' },
    ]);
    for (const ending of ['\n', '\r\n', '\r']) {
      const variant = text.replace(/\n/g, ending);
      for (let cut = 0; cut <= variant.length; cut++) expect(parse(variant.slice(0, cut), variant.slice(cut))).toEqual(whole);
      expect(parse(...variant.split(''))).toEqual(whole); // one character at a time, a CRLF split in two included
    }
  });

  it('drops an event without data and an unfinished one; a field without a colon or a space is still read', () => {
    expect(parse('event: x\n\ndata\n\ndata:x\n\ndata: never dispatched')).toEqual([
      { data: '', id: undefined },
      { data: 'x', id: undefined },
    ]);
  });

  it('keeps the last id for later events, takes one from a block without data, and an empty id clears it', () => {
    expect(parse('id: 1\ndata: a\n\ndata: b\n\nid: 2\n\ndata: c\n\nid\ndata: d\n\n')).toEqual([
      { data: 'a', id: '1' },
      { data: 'b', id: '1' },
      { data: 'c', id: '2' },
      { data: 'd', id: '' },
    ]);
  });

  it('strips one leading BOM, keeps values with colons, and ignores an id holding NUL', () => {
    expect(parse('\ufeffdata: {"url":"http://h:1"}\nid: a\0b\n\n')).toEqual([{ data: '{"url":"http://h:1"}', id: undefined }]);
  });
});
