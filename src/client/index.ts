/** realtime-gateway/client: the browser and Node client for the gateway's WebSocket endpoints (and SSE, where WebSocket is blocked). */
export {
  RealtimeClient,
  type AlertFrame,
  type ChatFrame,
  type ClientOptions,
  type ErrorFrame,
  type SignalFrame,
  type TransportMode,
  type WelcomeFrame,
  type WebSocketConstructor,
  type WebSocketLike,
} from './realtime-client';
export {
  ChannelSubscription,
  type AckFrame,
  type ChannelErrorFrame,
  type ChannelEvents,
  type ChannelFrame,
  type Position,
  type PresenceFrame,
  type PrivateFrame,
  type PublicationFrame,
  type PublishFrame,
  type ResumedFrame,
  type SubscribedFrame,
  type SubscribeFrame,
  type SubscribeOptions,
  type SubscriptionState,
  type UnsubscribedFrame,
  type UnsubscribeFrame,
} from './channel-subscription';
export { ChannelError, GatewayError } from './errors';
export { backoffDelay, type BackoffOptions } from './backoff';
