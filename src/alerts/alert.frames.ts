import { AckFrameSchema } from '../receipts/ack-frame';

/** Client → server frames of the alerts endpoint: the ack of an alert received with `"ack":true` (docs/protocol.md "Acknowledgements"). */
export const ALERT_FRAMES = { ack: AckFrameSchema };
