import { Inject, Injectable } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '../config/config';
import { LOGGER, type Logger } from '../logging/logger';
import { Metrics } from '../metrics/metrics';
import { channelKind, createEnvelope, type BusEnvelope, type BusHandler, type MessageBus, type Subscription } from './message-bus';
import { StreamIdGenerator } from './stream-id';

/** Embedded-mode bus: one process, delivery in a microtask so publishers never run subscriber code inline. */
@Injectable()
export class InMemoryBus implements MessageBus {
  readonly mode = 'embedded' as const;
  private readonly channels = new Map<string, Set<BusHandler>>();
  private readonly ids = new StreamIdGenerator();

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly metrics: Metrics,
    @Inject(LOGGER) private readonly log: Logger,
  ) {}

  async publish<T>(channel: string, data: T): Promise<BusEnvelope<T>> {
    const envelope = createEnvelope(this.ids, this.config.nodeId, channel, data);
    const kind = channelKind(channel);
    this.metrics.busPublished.labels(kind).inc();
    queueMicrotask(() => {
      const handlers = this.channels.get(channel);
      if (!handlers) return;
      this.metrics.busReceived.labels(kind).inc();
      for (const handler of handlers) {
        try {
          handler(envelope);
        } catch (error) {
          this.log.error({ err: error, channel: kind }, 'bus handler failed');
        }
      }
    });
    return envelope;
  }

  subscribe<T>(channel: string, handler: BusHandler<T>): Subscription {
    let handlers = this.channels.get(channel);
    if (!handlers) this.channels.set(channel, (handlers = new Set()));
    handlers.add(handler as BusHandler);
    const unsubscribe = () => {
      handlers.delete(handler as BusHandler);
      if (handlers.size === 0 && this.channels.get(channel) === handlers) this.channels.delete(channel);
    };
    return Object.assign(unsubscribe, { ready: Promise.resolve() });
  }

  isReady(): boolean {
    return true;
  }
}
