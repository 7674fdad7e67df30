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
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; max-width: 70rem; color: #222; }
  fieldset { border: 1px solid #ccc; margin-bottom: 1rem; }
  input, select, textarea, button { font: inherit; margin: .2rem .4rem .2rem 0; }
  input#token { width: 32rem; }
  #state { font-weight: bold; }
  #state[data-state="open"] { color: #0a0; } #state[data-state="closed"] { color: #a00; }
  #state[data-state="reconnecting"], #state[data-state="connecting"] { color: #b70; }
  #transport { color: #666; } #transport[data-transport="sse"] { color: #b70; }
  #why { color: #a00; font-weight: bold; margin: .4rem 0 0; }
  #log, .frames { list-style: none; padding: 0; font: 12px/1.4 ui-monospace, monospace; max-height: 24rem; overflow: auto; border: 1px solid #ddd; }
  #log li, .frames li { padding: .1rem .4rem; border-bottom: 1px solid #f0f0f0; white-space: pre-wrap; word-break: break-all; }
  #log li[data-kind="out"], .frames li[data-kind="out"] { color: #04a; }
  #log li[data-kind="close"], #log li[data-kind="error"], .frames li[data-kind="error"] { color: #a00; }
  .channel h3 { font-size: 1rem; margin: .6rem 0 .2rem; } .channel h3 span { font-weight: normal; color: #666; }
  .frames { max-height: 12rem; margin: 0; }
  table { border-collapse: collapse; font-size: 12px; } td { border: 1px solid #ddd; padding: .1rem .4rem; }
</style>
</head>
<body>
<h1>realtime-gateway demo</h1>
<fieldset>
  <legend>Connect</legend>
  <label>Endpoint <select id="endpoint">
    <option value="alerts">/api/alerts/subscribe (authority, admin)</option>
    <option value="chat">/ws/chat/:room (any role)</option>
    <option value="signaling-doctor">/ws/signaling/:consultation/doctor</option>
    <option value="signaling-patient">/ws/signaling/:consultation/patient</option>
    <option value="ws">/ws (many channels: subscribe below)</option>
  </select></label>
  <label>Room / consultation <input id="room" value="lobby" size="12"></label><br>
  <label>Gateway <input id="gateway" size="32" title="the public port: this page is served on the internal one"></label>
  <label>Transport (endpoint /ws) <select id="transport-mode">
    <option value="auto">auto: WebSocket, SSE when it is blocked</option>
    <option value="websocket">WebSocket only</option>
    <option value="sse">SSE only</option>
  </select></label><br>
  <label>Token <input id="token" placeholder="paste a JWT (npm run token -- --role authority)"></label><br>
  <button id="connect">Connect</button> <button id="disconnect">Disconnect</button>
  State: <span id="state" data-state="idle">idle</span> <span id="transport" hidden></span>
  <p id="why" hidden></p>
</fieldset>
<fieldset>
  <legend>Send</legend>
  <textarea id="outgoing" rows="2" cols="70">{"type":"ping"}</textarea><br>
  <button id="send">Send</button>
</fieldset>
<fieldset>
  <legend>Channels (endpoint /ws)</legend>
  <label>Channel <input id="channel" value="chat:lobby" size="24" placeholder="alerts, chat:&lt;room&gt;, user:&lt;sub&gt;, signaling:&lt;id&gt;"></label>
  <button id="subscribe">Subscribe</button> <button id="unsubscribe">Unsubscribe</button><br>
  <label>Data (a JSON object) <input id="data" value='{"text":"hello"}' size="40"></label>
  <button id="publish">Publish</button>
  <div id="channels"></div>
</fieldset>
<h2>Frames</h2>
<ol id="log"></ol>
<h2>Close codes</h2>
<table id="codes">${rows}</table>
<script src="/demo/client.js"></script>
<script>
(function () {
  var RealtimeClient = window.RealtimeGateway.RealtimeClient;
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
  function log(kind, text) { append($('log'), kind, text); }
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
