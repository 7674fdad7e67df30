import type { MessageBus, Subscription } from '../bus/message-bus';
import type { Connection } from '../connection/connection';
import type { ConnectionRegistry } from '../connection/connection-registry';

/**
 * Rooms that span replicas: a room is a bus channel (`chat:lobby`, `signaling:c42`) that this node
 * subscribes to while it has at least one local member, and leaves after the last one closes. Every message
 * published to a room reaches each subscribed node once; the feature's handler then delivers it to the local
 * members.
 */
export class RoomChannels<T> {
  private readonly subscriptions = new Map<string, Subscription>();

  constructor(
    private readonly bus: MessageBus,
    private readonly registry: ConnectionRegistry,
    private readonly deliver: (room: string, message: T, localMembers: ReadonlySet<Connection>) => void,
  ) {}

  /** Adds a local member; resolves once messages published to the room from now on will reach it. */
  join(conn: Connection, room: string): Promise<void> {
    this.registry.join(conn, room);
    let subscription = this.subscriptions.get(room);
    if (!subscription) {
      subscription = this.bus.subscribe<T>(room, (envelope) => this.deliver(room, envelope.data, this.registry.inRoom(room)));
      this.subscriptions.set(room, subscription);
    }
    // Close listeners run after the registry dropped the connection.
    conn.onClose(() => {
      const current = this.subscriptions.get(room);
      if (!current || this.registry.inRoom(room).size > 0) return;
      this.subscriptions.delete(room);
      current();
    });
    return subscription.ready;
  }

  publish(room: string, message: T): Promise<unknown> {
    return this.bus.publish(room, message);
  }

  localMembers(room: string): ReadonlySet<Connection> {
    return this.registry.inRoom(room);
  }
}
