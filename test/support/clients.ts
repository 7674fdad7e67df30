import type { IncomingMessage } from 'node:http';
import WebSocket, { type ClientOptions } from 'ws';

export interface Refusal {
  status: number;
  headers: IncomingMessage['headers'];
  body: { error: string; message: string };
}

export interface Closed {
  code: number;
  reason: string;
}

/**
 * A real ws client that queues what it receives so a test can await the next frame, a frame of some type,
 * or the close, without sleeping.
 */
export class TestClient {
  readonly frames: unknown[] = [];
  private waiters: (() => void)[] = [];
  readonly closed: Promise<Closed>;

  constructor(readonly ws: WebSocket) {
    ws.on('message', (data, isBinary) => {
      const text = isBinary ? data : data.toString();
      let frame: unknown = text;
      if (typeof text === 'string' && text.startsWith('{')) frame = JSON.parse(text);
      this.frames.push(frame);
      this.wake();
    });
    this.closed = new Promise((resolve) =>
      ws.on('close', (code, reason) => {
        this.wake();
        resolve({ code, reason: reason.toString() });
      }),
    );
    ws.on('error', () => undefined);
  }

  private wake(): void {
    for (const waiter of this.waiters.splice(0)) waiter();
  }

  /** Resolves with the first queued frame matching `predicate` (removing it), waiting if needed. */
  async take<T = Record<string, unknown>>(predicate: (frame: any) => boolean = () => true, timeoutMs = 5000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const index = this.frames.findIndex(predicate);
      if (index !== -1) return this.frames.splice(index, 1)[0] as T;
      if (this.ws.readyState === WebSocket.CLOSED) throw new Error(`socket closed; frames left: ${JSON.stringify(this.frames)}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no matching frame within ${timeoutMs} ms; have ${JSON.stringify(this.frames).slice(0, 500)}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  next<T = Record<string, unknown>>(timeoutMs?: number): Promise<T> {
    return this.take<T>(() => true, timeoutMs);
  }

  ofType<T = Record<string, unknown>>(type: string, timeoutMs?: number): Promise<T> {
    return this.take<T>((f) => typeof f === 'object' && f !== null && (f as { type?: string }).type === type, timeoutMs);
  }

  send(frame: unknown): void {
    this.ws.send(typeof frame === 'string' || Buffer.isBuffer(frame) ? frame : JSON.stringify(frame));
  }

  close(code = 1000): Promise<Closed> {
    this.ws.close(code);
    return this.closed;
  }
}

/** Opens a socket; rejects with the HTTP refusal (status, headers, JSON body) if the upgrade is refused. */
export function connect(url: string, options: ClientOptions & { protocols?: string[] } = {}): Promise<TestClient> {
  const { protocols, ...rest } = options;
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, protocols ?? [], rest);
    // Queue frames from the first byte: the server may send right after the handshake.
    const client = new TestClient(ws);
    ws.once('open', () => resolve(client));
    ws.once('unexpected-response', (_req, res) => {
      let raw = '';
      res.on('data', (chunk) => (raw += chunk));
      res.on('end', () => {
        let body: Refusal['body'];
        try {
          body = JSON.parse(raw);
        } catch {
          body = { error: 'not_json', message: raw };
        }
        reject(Object.assign(new Error(`HTTP ${res.statusCode}`), { status: res.statusCode!, headers: res.headers, body }));
      });
    });
    ws.once('error', (error) => reject(error));
  });
}

/** Expects the upgrade to be refused and returns the refusal. */
export async function refusal(url: string, options: ClientOptions & { protocols?: string[] } = {}): Promise<Refusal> {
  try {
    const client = await connect(url, options);
    await client.close();
  } catch (error) {
    const e = error as Partial<Refusal>;
    if (typeof e.status === 'number') return e as Refusal;
    throw error;
  }
  throw new Error(`expected ${url} to be refused, but it connected`);
}
