import { AlertsModule } from './alerts/alerts.module';
import { ChatModule } from './chat/chat.module';
import { SignalingModule } from './signaling/signaling.module';
import { WsModule } from './ws/ws.module';

/**
 * The gateways this service serves, one feature module each. Adding one is a folder with its
 * @RealtimeGateway and a line here: routes, the 404 path list, metric labels and the doctor follow from it.
 */
export const GATEWAYS = [AlertsModule, SignalingModule, ChatModule, WsModule];
