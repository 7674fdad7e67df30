// What both raw-TCP load processes send: the upgrade request for a target URL, and (Socket.IO only) the
// masked text frame "40" that joins the default namespace after engine.io's open packet, and the pong.
'use strict';

function upgradeRequest(target) {
  return Buffer.from(
    `GET ${target.pathname}${target.search} HTTP/1.1\r\nHost: ${target.host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
      'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
  );
}

// Masked client text frame "40" with mask key 0.
const JOIN_NAMESPACE = Buffer.from([0x81, 0x82, 0, 0, 0, 0, 0x34, 0x30]);

// Masked client text frame "3": engine.io's pong. Without it Socket.IO drops the socket after pingInterval +
// pingTimeout (45 s), and a long round would measure fewer subscribers than it dialed.
const PONG = Buffer.from([0x81, 0x81, 0, 0, 0, 0, 0x33]);

/** A masked client text frame (mask key 0, so the payload goes as is), for the frames a load socket sends. */
function maskedText(text) {
  const payload = Buffer.from(text);
  const head = payload.length < 126 ? Buffer.from([0x81, 0x80 | payload.length]) : Buffer.from([0x81, 0x80 | 126, payload.length >> 8, payload.length & 0xff]);
  return Buffer.concat([head, Buffer.alloc(4), payload]);
}

module.exports = { upgradeRequest, maskedText, JOIN_NAMESPACE, PONG };
