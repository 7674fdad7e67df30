import type { Connection } from './connection';

const EMPTY: ReadonlySet<Connection> = new Set();

function addTo<K>(index: Map<K, Set<Connection>>, key: K, conn: Connection): number {
  let set = index.get(key);
  if (!set) index.set(key, (set = new Set()));
  set.add(conn);
  return set.size;
}

/** Returns how many are left under `key` (0: the key is gone). */
function removeFrom<K>(index: Map<K, Set<Connection>>, key: K, conn: Connection): number {
  const set = index.get(key);
  if (!set) return 0;
  set.delete(conn);
  if (set.size === 0) index.delete(key);
  return set.size;
}

/**
 * This node's open connections, indexed by id, gateway, user and room. Every operation is O(1) (room
 * removal is O(rooms of that connection)); empty index entries are deleted so nothing outlives its sockets.
 */
export class ConnectionRegistry {
  private readonly byId = new Map<string, Connection>();
  private readonly byGateway = new Map<string, Set<Connection>>();
  private readonly byUser = new Map<string, Set<Connection>>();
  private readonly byRoom = new Map<string, Set<Connection>>();

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

  inGateway(gateway: string): ReadonlySet<Connection> {
    return this.byGateway.get(gateway) ?? EMPTY;
  }

  ofUser(sub: string): ReadonlySet<Connection> {
    return this.byUser.get(sub) ?? EMPTY;
  }

  inRoom(room: string): ReadonlySet<Connection> {
    return this.byRoom.get(room) ?? EMPTY;
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
    for (const [channel, set] of this.byRoom) {
      if (top.length < limit || set.size > top[top.length - 1].members) {
        top.push({ channel, members: set.size });
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
