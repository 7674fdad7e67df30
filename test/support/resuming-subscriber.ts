import { connect, type TestClient } from './clients';
import { token } from './tokens';

interface Frame {
  type: string;
  id?: string;
  epoch?: string;
  recovered?: boolean;
  [key: string]: unknown;
}

/**
 * An alerts subscriber the way a careful client behaves, written against the protocol rather than the SDK:
 * keeps the epoch from `welcome` and the last alert id, and on every close reconnects (after `jitterMs`) to
 * whichever URL `target` gives, with `since` and `epoch`. Frames are read from the first byte, including those
 * that arrive in the same read as the 101 response. With `via: 'ws'` it does the same over `/ws`: a subscribe
 * frame for `alerts` with `since` and `epoch`, `subscribed` as its welcome and `publication` frames as alerts.
 */
export class ResumingSubscriber {
  /** Ids of the alerts received, in arrival order. */
  readonly received: string[] = [];
  readonly closes: number[] = [];
  /** `received.length` each time the server said recovered:false (something before that point may be gone). */
  readonly notRecoveredAt: number[] = [];
  /** What the next connection resumes from: the epoch, and the last id received (or named by `welcome`). */
  position: { id: string; epoch: string } | undefined;
  client: TestClient | undefined;
  connectedTo = '';
  private running = true;
  private loop: Promise<void> | undefined;

  constructor(
    private readonly sub: string,
    private readonly target: (attempt: number) => { name: string; url: string } | undefined,
    private readonly jitterMs = 100,
    private readonly via: 'path' | 'ws' = 'path',
  ) {}

  start(): void {
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.running = false;
    this.client?.ws.terminate();
    await this.loop;
  }

  private take(frame: Frame): void {
    if (frame.type === 'welcome' || (frame.type === 'subscribed' && frame.epoch !== undefined)) {
      // The first welcome, or a new epoch (ids of the old one mean nothing any more): start where it says.
      if (this.position?.epoch !== frame.epoch) this.position = { id: frame.id!, epoch: frame.epoch! };
    } else if ((frame.type === 'alert' || (frame.type === 'publication' && frame.channel === 'alerts')) && frame.id) {
      this.received.push(frame.id);
      if (this.position) this.position.id = frame.id;
    } else if (frame.type === 'resumed' && frame.recovered === false) {
      this.notRecoveredAt.push(this.received.length);
    }
  }

  private async run(): Promise<void> {
    for (let attempt = 0; this.running; attempt++) {
      const target = this.target(attempt);
      if (!target) {
        await new Promise((resolve) => setTimeout(resolve, 50));
        continue;
      }
      const resume = this.position ? `&since=${this.position.id}&epoch=${this.position.epoch}` : '';
      let client: TestClient;
      try {
        this.connectedTo = target.name;
        if (this.via === 'ws') {
          client = await connect(`${target.url}/ws?token=${token({ sub: this.sub })}`);
          const since = this.position ? { since: this.position.id, epoch: this.position.epoch } : {};
          client.send({ type: 'subscribe', channel: 'alerts', ...since });
        } else {
          client = await connect(`${target.url}/api/alerts/subscribe?token=${token({ sub: this.sub })}${resume}`);
        }
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 50)); // backoff before the next replica
        continue;
      }
      this.client = client;
      // What arrived with the 101 is already queued: take it, then listen, in the same turn.
      for (const frame of client.frames.splice(0)) this.take(frame as Frame);
      client.ws.on('message', () => {
        for (const frame of client.frames.splice(0)) this.take(frame as Frame);
      });
      const { code } = await client.closed;
      this.closes.push(code);
      attempt = -1;
      await new Promise((resolve) => setTimeout(resolve, Math.random() * this.jitterMs));
    }
  }
}
