import { CONSOLE_STYLE, FAVICON_LINK } from '../http/console-page';
import { DEMO_PUSH_SECTION } from './demo-push';

/** Close codes as docs/protocol.md explains them; shown beside every close in the demo's log. */
export const CLOSE_CODES: Record<number, string> = {
  1000: 'normal close',
  1001: 'idle timeout or server going away: reconnect',
  1003: 'binary frame refused: send JSON text',
  1006: 'connection dropped without a close frame (network, proxy, refused upgrade): back off and retry',
  1007: 'invalid UTF-8',
  1008: 'rate limit abused: slow down, do not retry unchanged',
  1009: 'frame over MAX_MESSAGE_BYTES',
  1011: 'server error in this connection: back off and retry',
  1012: 'server restarting (drain): reconnect at once, resuming with since and epoch',
  1013: 'slow consumer: read faster',
  4001: 'token expired: refresh it, then reconnect',
  4003: 'disconnected by an operator (server API): do not reconnect',
};

const rows = Object.entries(CLOSE_CODES)
  .map(([code, text]) => `<tr><td>${code}</td><td>${text}</td></tr>`)
  .join('');

/**
 * The demo console: pick an endpoint, paste a token, connect, watch frames and closes, send frames. On `/ws`,
 * subscribe to channels, publish and unsubscribe, each channel's frames in its own list; the state line says
 * which transport the connection uses (WebSocket, or SSE where WebSocket is blocked). It uses the SDK
 * (served as /demo/client.js), so reconnects, resume (per channel on `/ws`) and close handling are the real ones.
 */
export const DEMO_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>realtime-gateway demo</title>
${FAVICON_LINK}
<style>
${CONSOLE_STYLE}
  #state { font-weight: 600; }
  #state[data-state="open"] { color: var(--ok); } #state[data-state="closed"] { color: var(--bad); }
  #state[data-state="reconnecting"], #state[data-state="connecting"] { color: var(--warn); }
  #transport { color: var(--muted); font-size: .9rem; } #transport[data-transport="sse"] { color: var(--warn); }
  #why { color: var(--bad); font-weight: 600; margin: .6rem 0 0; overflow-wrap: anywhere; }
  #log { max-height: 28rem; }
  ol.frames li[data-kind="out"] { color: var(--accent); }
  ol.frames li[data-kind="close"], ol.frames li[data-kind="error"] { color: var(--bad); }
  .empty ol { margin: .4rem 0 0; padding-left: 1.2rem; }
  .channel h3 { font-size: .95rem; margin: .8rem 0 .2rem; overflow-wrap: anywhere; } .channel h3 span { font-weight: normal; color: var(--muted); }
  .channel .frames { max-height: 12rem; margin: 0; }
  #codes td:first-child { font-variant-numeric: tabular-nums; white-space: nowrap; }
</style>
</head>
<body>
<header>
  <h1>realtime-gateway demo</h1>
  <span>State: <span id="state" data-state="idle">idle</span></span>
  <span id="transport" hidden></span>
</header>
<main>
  <section id="connectCard">
    <h2>Connect</h2>
    <label>Endpoint <select id="endpoint">
      <option value="alerts">/api/alerts/subscribe (authority, admin)</option>
      <option value="chat">/ws/chat/:room (any role)</option>
      <option value="signaling-doctor">/ws/signaling/:consultation/doctor</option>
      <option value="signaling-patient">/ws/signaling/:consultation/patient</option>
      <option value="ws">/ws (many channels: subscribe below)</option>
    </select></label>
    <label>Room / consultation <input id="room" value="lobby"></label>
    <label>Gateway (the public port: this page is served on the internal one) <input id="gateway" spellcheck="false"></label>
    <label>Transport (endpoint /ws) <select id="transport-mode">
      <option value="auto">auto: WebSocket, SSE when it is blocked</option>
      <option value="websocket">WebSocket only</option>
      <option value="sse">SSE only</option>
    </select></label>
    <label>Token <input id="token" placeholder="a JWT for the endpoint (role authority for alerts)" autocomplete="off" spellcheck="false"></label>
    <div class="row">
      <button id="dev" class="quiet" hidden>Get a development token</button>
      <button id="connect">Connect</button>
      <button id="disconnect" class="quiet">Disconnect</button>
    </div>
    <p id="why" hidden></p>
  </section>
  <section class="wide">
    <h2>Frames</h2>
    <div id="empty" class="empty">
      <b>Nothing yet.</b>
      <ol>
        <li>Pick an endpoint (and a room or consultation).</li>
        <li id="emptyToken">Paste a token for it, made where the gateway runs: <code>realtime-gateway token --role authority</code> (alerts; <code>--role doctor --channel signaling:&lt;id&gt;</code> for signaling; any role for chat). In Kubernetes: <code>kubectl exec deploy/&lt;release&gt;-realtime-gateway -- realtime-gateway token --role authority</code>; in a clone: <code>npm run token -- --role authority</code>.</li>
        <li>Connect: every frame, close and error shows here, each close with what its code means.</li>
      </ol>
    </div>
    <ol id="log" class="frames"></ol>
  </section>
  <section>
    <h2>Send</h2>
    <label>A frame (JSON text) <textarea id="outgoing" rows="3">{"type":"ping"}</textarea></label>
    <div class="row"><button id="send">Send</button></div>
  </section>
  <section>
    <h2>Channels (endpoint /ws)</h2>
    <label>Channel <input id="channel" value="chat:lobby" placeholder="alerts, chat:&lt;room&gt;, user:&lt;sub&gt;, signaling:&lt;id&gt;"></label>
    <div class="row"><button id="subscribe">Subscribe</button> <button id="unsubscribe" class="quiet">Unsubscribe</button></div>
    <label>Data (a JSON object) <input id="data" value='{"text":"hello"}'></label>
    <div class="row"><button id="publish">Publish</button></div>
    <div id="channels"></div>
  </section>
  <section>
    <h2>Close codes</h2>
    <div class="scroll"><table id="codes">${rows}</table></div>
  </section>
  <!-- Web Push: its own block, script and service worker (src/demo/demo-push.ts) -->
${DEMO_PUSH_SECTION}
</main>
<script src="/demo/client.js"></script>
<script>
(function () {
  var RealtimeClient = window.RealtimeGateway.RealtimeClient;
  var DEV_TOKEN = __DEV_TOKEN__;
  var CODES = ${JSON.stringify(CLOSE_CODES)};
  var $ = function (id) { return document.getElementById(id); };
  var client;
  var multiplexed = false; // the current client is on /ws
  var handles = {};
  function setState(state) { $('state').textContent = state; $('state').dataset.state = state; }
  function append(list, kind, text) {
    var li = document.createElement('li');
    li.dataset.kind = kind;
    li.textContent = new Date().toISOString().slice(11, 23) + ' ' + kind + ' ' + text;
    list.appendChild(li);
    list.scrollTop = list.scrollHeight;
  }
  // The empty state says what to do until the log has something to show.
  function log(kind, text) { $('empty').hidden = true; append($('log'), kind, text); }
  // One section per channel of /ws: its state, and every event of its handle (kept across a re-subscribe).
  var views = {};
  function channelView(handle) {
    var view = views[handle.channel];
    if (!view) {
      view = views[handle.channel] = { section: document.createElement('section'), title: document.createElement('h3'), state: document.createElement('span'), list: document.createElement('ol') };
      view.section.className = 'channel';
      view.section.dataset.channel = handle.channel;
      view.title.textContent = handle.channel + ' ';
      view.title.appendChild(view.state);
      view.list.className = 'frames';
      view.section.appendChild(view.title);
      view.section.appendChild(view.list);
      $('channels').appendChild(view.section);
    }
    var section = view.section, state = view.state, list = view.list;
    function show() {
      var p = handle.position;
      state.textContent = handle.state + (p ? ' at ' + p.id + ' (epoch ' + p.epoch + ')' : '');
      section.dataset.state = handle.state;
    }
    ['subscribed', 'publication', 'join', 'leave', 'private', 'resumed'].forEach(function (event) {
      handle.on(event, function (frame) { append(list, event, JSON.stringify(frame)); show(); });
    });
    handle.on('error', function (error) { append(list, 'error', error.message + (error.fatal ? ' (not retried)' : '')); show(); });
    handle.on('unsubscribed', function () {
      append(list, 'unsubscribed', '');
      if (handles[handle.channel] === handle) delete handles[handle.channel];
      show();
    });
    show();
  }
  function channelHandle(create) {
    var name = $('channel').value.trim();
    if (!client || !multiplexed) { log('error', 'channels need the /ws endpoint: pick it above and connect first'); return; }
    if (!name) { log('error', 'type a channel name, e.g. chat:lobby'); return; }
    if (!create) {
      if (!handles[name]) log('error', 'not subscribed to ' + name + ': subscribe first');
      return handles[name];
    }
    var handle = client.subscribe(name);
    if (!handles[name]) { handles[name] = handle; channelView(handle); }
    return handle;
  }
  function path() {
    var room = encodeURIComponent($('room').value.trim() || 'lobby');
    var endpoint = $('endpoint').value;
    if (endpoint === 'alerts') return '/api/alerts/subscribe';
    if (endpoint === 'ws') return '/ws';
    if (endpoint === 'chat') return '/ws/chat/' + room;
    return '/ws/signaling/' + room + '/' + endpoint.split('-')[1];
  }
  // The WebSocket endpoints are on the public port (this page is on the internal one); behind a load balancer,
  // type its address instead.
  $('gateway').value = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.hostname + ':' + __PUBLIC_PORT__;
  $('connect').onclick = function () {
    if (client) client.close();
    // The old client's channels ended with it (each says so); a new connection starts with none.
    handles = {};
    views = {};
    $('channels').textContent = '';
    var url = $('gateway').value.trim().replace(/[/]+$/, '') + path();
    multiplexed = $('endpoint').value === 'ws';
    client = new RealtimeClient({ url: url, getToken: function () { return $('token').value.trim(); }, transport: $('transport-mode').value });
    client.on('open', function () {
      setState('open');
      // How this connection reaches the gateway: "sse" when WebSocket is blocked on the way (endpoint /ws).
      $('transport').textContent = 'over ' + client.transport;
      $('transport').dataset.transport = client.transport;
      $('transport').hidden = false;
      log('open', url + ' over ' + client.transport);
    });
    client.on('frame', function (frame) { log('in', JSON.stringify(frame)); });
    client.on('close', function (e) {
      var text = e.code + ' ' + (CODES[e.code] || '') + (e.reason ? ' (' + e.reason + ')' : '');
      if (e.reconnectInMs !== undefined) text += ', reconnecting in ' + e.reconnectInMs + ' ms';
      log('close', text);
      setState(e.reconnectInMs !== undefined ? 'reconnecting' : 'closed');
    });
    client.on('error', function (error) {
      log('error', error.message);
      // A refusal retrying cannot fix (the SDK asks the server why, even where the browser hides the status).
      if (error.fatal) { $('why').textContent = error.message; $('why').hidden = false; }
    });
    $('why').hidden = true;
    $('transport').hidden = true;
    setState('connecting');
    client.connect();
  };
  $('disconnect').onclick = function () { if (client) client.close(); };
  // Development tokens (the server runs on the public development key, not in production): one for the endpoint
  // picked, with the role it takes and, for signaling, the consultation in its channels claim.
  function devClaims() {
    var room = $('room').value.trim() || 'lobby';
    var endpoint = $('endpoint').value;
    if (endpoint === 'alerts') return { role: 'authority', channels: [] };
    if (endpoint === 'chat') return { role: 'patient', channels: [] };
    if (endpoint === 'ws') return { role: 'authority', channels: ['signaling:*'] };
    return { role: endpoint.split('-')[1], channels: ['signaling:' + room] };
  }
  if (DEV_TOKEN) {
    $('dev').hidden = false;
    $('emptyToken').innerHTML = 'Click <b>Get a development token</b> (this server runs on the public development key), or paste a token.';
    $('dev').onclick = function () {
      var claims = devClaims();
      var query = 'role=' + encodeURIComponent(claims.role) + claims.channels.map(function (c) { return '&channel=' + encodeURIComponent(c); }).join('');
      fetch('/demo/dev-token?' + query, { method: 'POST' })
        .then(function (res) { if (!res.ok) throw new Error('the server answered ' + res.status); return res.json(); })
        .then(function (json) { $('token').value = json.token; }, function (error) { log('error', 'no development token: ' + error.message); });
    };
  }
  $('send').onclick = function () {
    if (!client) return log('error', 'connect first');
    var text = $('outgoing').value;
    try { client.send(text); log('out', text); } catch (error) { log('error', error.message); }
  };
  $('subscribe').onclick = function () { try { channelHandle(true); } catch (error) { log('error', error.message); } };
  $('unsubscribe').onclick = function () { var handle = channelHandle(false); if (handle) handle.unsubscribe(); };
  $('publish').onclick = function () {
    var handle = channelHandle(false);
    if (!handle) return;
    var data;
    try { data = JSON.parse($('data').value); } catch (error) { return log('error', 'data is not JSON: ' + error.message); }
    try {
      handle.publish(data);
      append(views[handle.channel].list, 'out', JSON.stringify(data));
    } catch (error) { log('error', error.message); }
  };
})();
</script>
</body>
</html>
`;
