import { request, type IncomingMessage } from 'node:http';

/** One event as the SSE wire has it: its `id:` (when it had one) and its `data:` parsed as JSON. */
export interface SseEvent {
  id?: string;
  data: any;
}

export interface SseRefusal {
  status: number;
  headers: IncomingMessage['headers'];
  body: Record<string, unknown>;
}

/**
 * A raw reader of `GET /sse` over node:http, parsing the stream as the SSE specification says (fields, blank
 * line ends an event, `:` comments): what the wire carries, for assertions on ids and comments. A refusal
 * (anything but 200) rejects `open` with its status and JSON body.
 */
export class SseClient {
  readonly events: SseEvent[] = [];
  /** Comment lines received (heartbeats). */
  comments = 0;
  /** The last `id:` seen, as an EventSource remembers it. */
  lastEventId: string | undefined;
  readonly ended: Promise<void>;
  private endedNow = false;
  private waiters: (() => void)[] = [];
  private res: IncomingMessage | undefined;
  private readonly req: ReturnType<typeof request>;

  private constructor(url: string, headers: Record<string, string>, onOpen: (res: IncomingMessage) => void, onRefused: (refusal: SseRefusal | Error) => void) {
    let resolveEnded!: () => void;
    this.ended = new Promise((resolve) => (resolveEnded = resolve));
    const finish = () => {
      if (this.endedNow) return;
      this.endedNow = true;
      resolveEnded();
      this.wake();
    };
    this.req = request(url, { headers: { accept: 'text/event-stream', ...headers } }, (res) => {
      if (res.statusCode !== 200) {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () => onRefused({ status: res.statusCode ?? 0, headers: res.headers, body: body ? JSON.parse(body) : {} }));
        return;
      }
      this.res = res;
      res.setEncoding('utf8');
      let buffer = '';
      let id: string | undefined;
      let data: string[] = [];
      res.on('data', (chunk: string) => {
        buffer += chunk;
        let nl: number;
        while ((nl = buffer.indexOf('\n')) !== -1) {
          const line = buffer.slice(0, nl).replace(/\r$/, '');
          buffer = buffer.slice(nl + 1);
          if (line === '') {
            if (data.length) {
              const text = data.join('\n');
              this.events.push({ id, data: text.startsWith('{') ? JSON.parse(text) : text });
              if (id !== undefined) this.lastEventId = id;
            }
            id = undefined;
            data = [];
          } else if (line.startsWith(':')) this.comments++;
          else if (line.startsWith('id:')) id = line.slice(3).replace(/^ /, '');
          else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
        }
        this.wake();
      });
      res.on('end', finish);
      res.on('close', finish);
      onOpen(res);
    });
    this.req.on('error', (error) => {
      onRefused(error);
      finish();
    });
    this.req.end();
  }

  /** Opens a stream; rejects with an SseRefusal when it is refused before it starts. */
  static open(url: string, headers: Record<string, string> = {}): Promise<SseClient> {
    return new Promise((resolve, reject) => {
      const client: SseClient = new SseClient(url, headers, (res) => resolve(client), reject);
    });
  }

  /** Opens and expects a refusal. */
  static async refusal(url: string, headers: Record<string, string> = {}): Promise<SseRefusal> {
    try {
      const client = await SseClient.open(url, headers);
      client.close();
      throw new Error('the stream was opened');
    } catch (error) {
      if (error instanceof Error) throw error;
      return error as SseRefusal;
    }
  }

  get headers(): IncomingMessage['headers'] {
    return this.res!.headers;
  }

  private wake(): void {
    for (const waiter of this.waiters.splice(0)) waiter();
  }

  /** The first queued event whose data matches (removed), waiting for it. */
  async take(predicate: (data: any) => boolean = () => true, timeoutMs = 5000): Promise<SseEvent> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const index = this.events.findIndex((e) => predicate(e.data));
      if (index !== -1) return this.events.splice(index, 1)[0];
      if (this.endedNow) throw new Error(`stream ended; events left: ${JSON.stringify(this.events).slice(0, 500)}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no matching event within ${timeoutMs} ms; have ${JSON.stringify(this.events).slice(0, 500)}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  ofType(type: string, timeoutMs?: number): Promise<SseEvent> {
    return this.take((d) => typeof d === 'object' && d !== null && d.type === type, timeoutMs);
  }

  /** Waits for a condition on what has arrived (comments, for instance). */
  async until(check: () => boolean, timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!check()) {
      if (this.endedNow) throw new Error('stream ended');
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`condition not met within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Stops reading without closing (a client that never reads): the socket stays, its buffer fills. */
  pause(): void {
    this.res?.pause();
  }

  close(): Promise<void> {
    this.req.destroy();
    return this.ended;
  }
}

/** POST /sse/send; resolves with the status and JSON body. */
export async function sendFrame(url: string, token: string, session: string, frame: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(url, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ session, frame }) });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}
