/**
 * The ports this process actually listens on (PORT=0 / INTERNAL_PORT=0 pick free ones), known once both
 * listen. Pages served on the internal port (/demo, /admin) use the public one to reach the WebSocket endpoints.
 */
export class Listeners {
  publicPort = 0;
  internalPort = 0;
}
