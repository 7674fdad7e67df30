import type { Connection } from './connection';

const EMPTY: Members = new Set<Connection>();

/** Who is under one key of an index: a Set, or the one connection there (see `Index`). */
export interface Members extends Iterable<Connection> {
  readonly size: number;
  has(conn: Connection): boolean;
}

/** One connection as `Members`, made on demand by a lookup (short-lived; the index holds the connection). */
class One implements Members {
  readonly size = 1;
  constructor(private readonly conn: Connection) {}
  has(conn: Connection): boolean {
    return conn === this.conn;
  }
  *[Symbol.iterator](): Iterator<Connection> {
    yield this.conn;
  }
}

/**
 * An index whose key holds one connection (most users, and each `user:<sub>` channel) holds it directly: a Set of
 * one costs about 200 bytes of heap (the Set and its hash table) per user on a node of distinct users.
 */
type Index<K> = Map<K, Connection | Set<Connection>>;

function addTo<K>(index: Index<K>, key: K, conn: Connection): number {
  const held = index.get(key);
  if (held === undefined) {
    index.set(key, conn);
    return 1;
  }
  if (held instanceof Set) return held.add(conn).size;
  if (held === conn) return 1;
  index.set(key, new Set([held, conn]));
  return 2;
}

/** Returns how many are left under `key` (0: the key is gone). */
function removeFrom<K>(index: Index<K>, key: K, conn: Connection): number {
  const held = index.get(key);
  if (held === undefined) return 0;
  if (held instanceof Set) {
    held.delete(conn);
    if (held.size === 0) index.delete(key);
    return held.size;
  }
  if (held !== conn) return 1;
  index.delete(key);
  return 0;
}

function membersOf<K>(index: Index<K>, key: K): Members {
  const held = index.get(key);
  return held === undefined ? EMPTY : held instanceof Set ? held : new One(held);
}

function sizeOf(held: Connection | Set<Connection>): number {
  return held instanceof Set ? held.size : 1;
}

/**
 * This node's open connections, indexed by id, gateway, user and room. Every operation is O(1) (room
 * removal is O(rooms of that connection)); empty index entries are deleted so nothing outlives its sockets.
 */
export class ConnectionRegistry {
  private readonly byId = new Map<string, Connection>();
  private readonly byGateway: Index<string> = new Map();
  private readonly byUser: Index<string> = new Map();
  private readonly byRoom: Index<string> = new Map();

  get size(): number {
    return this.byId.size;
  }

  add(conn: Connection): void {
    this.byId.set(conn.id, conn);
    addTo(this.byGateway, conn.gateway, conn);
    addTo(this.byUser, conn.user.sub, conn);
  }

  /** Removes the connection from every index; returns the rooms it left empty on this node. */
  remove(conn: Connection): string[] {
    if (!this.byId.delete(conn.id)) return [];
    removeFrom(this.byGateway, conn.gateway, conn);
    removeFrom(this.byUser, conn.user.sub, conn);
    const emptied: string[] = [];
    if (conn.rooms) {
      for (const room of conn.rooms) if (removeFrom(this.byRoom, room, conn) === 0) emptied.push(room);
      conn.rooms = undefined;
    }
    return emptied;
  }

  get(id: string): Connection | undefined {
    return this.byId.get(id);
  }

  inGateway(gateway: string): Members {
    return membersOf(this.byGateway, gateway);
  }

  ofUser(sub: string): Members {
    return membersOf(this.byUser, sub);
  }

  inRoom(room: string): Members {
    return membersOf(this.byRoom, room);
  }

  /** How many of this node's connections are members of `room` (no allocation). */
  roomSize(room: string): number {
    const held = this.byRoom.get(room);
    return held === undefined ? 0 : sizeOf(held);
  }

  /** Returns true when this is the room's first member on this node (time to subscribe its channel). */
  join(conn: Connection, room: string): boolean {
    if (!this.byId.has(conn.id)) return false;
    // An array, not a Set: a connection is in one or two rooms, and a Set costs ~150 bytes per socket.
    const rooms = (conn.rooms ??= []);
    if (rooms.includes(room)) return false;
    rooms.push(room);
    return addTo(this.byRoom, room, conn) === 1;
  }

  /** Returns true when the room has no member left on this node. */
  leave(conn: Connection, room: string): boolean {
    const index = conn.rooms?.indexOf(room) ?? -1;
    if (index === -1) return false;
    conn.rooms!.splice(index, 1);
    return removeFrom(this.byRoom, room, conn) === 0;
  }

  all(): IterableIterator<Connection> {
    return this.byId.values();
  }

  /** The `limit` channels (rooms) with the most members on this node, busiest first. */
  busiestRooms(limit: number): { channel: string; members: number }[] {
    const top: { channel: string; members: number }[] = [];
    for (const [channel, held] of this.byRoom) {
      const members = sizeOf(held);
      if (top.length < limit || members > top[top.length - 1].members) {
        top.push({ channel, members });
        top.sort((a, b) => b.members - a.members || a.channel.localeCompare(b.channel));
        if (top.length > limit) top.pop();
      }
    }
    return top;
  }

  /** Index sizes, for tests and diagnostics: all zero once every socket is gone. */
  stats(): { connections: number; gateways: number; users: number; rooms: number } {
    return {
      connections: this.byId.size,
      gateways: this.byGateway.size,
      users: this.byUser.size,
      rooms: this.byRoom.size,
    };
  }
}
