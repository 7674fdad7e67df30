/** realtime-gateway/client: the browser and Node client for the gateway's WebSocket endpoints. */
export {
  RealtimeClient,
  type AlertFrame,
  type ChatFrame,
  type ClientOptions,
  type ErrorFrame,
  type Position,
  type SignalFrame,
  type WelcomeFrame,
  type WebSocketConstructor,
  type WebSocketLike,
} from './realtime-client';
export { GatewayError } from './errors';
export { backoffDelay, type BackoffOptions } from './backoff';
