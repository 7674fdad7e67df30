import { CONSOLE_STYLE, FAVICON_LINK } from '../http/console-page';

/**
 * The admin console (`GET /admin`, internal port): one static page, no build step. It calls the server API with
 * the admin token the operator pastes (kept in this tab's sessionStorage only) and refreshes itself every 2 s:
 * the replicas, the busiest channels with their members, message and connection rates, a publish form,
 * disconnect buttons, an alert's receipts (who got it, who acknowledged it, who is pending; `#alert=<id>` opens
 * one), and (with WEBHOOK_URL) the webhook queue and recent failed deliveries. Its live view
 * watches one channel over `/ws` on the public port with the SDK (`/admin/client.js`), the token in the `bearer`
 * subprotocol. `__DEV_TOKEN__` is replaced by `true` when the server offers development tokens,
 * `__PUBLIC_PORT__` by the public port (the live view's default address).
 */
export const ADMIN_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>realtime-gateway admin</title>
${FAVICON_LINK}
<style>
${CONSOLE_STYLE}
  #token { width: min(28rem, 100%); }
  #status { font-size: .9rem; color: var(--muted); }
  #status[data-state="error"] { color: var(--bad); font-weight: 600; }
  #status[data-state="live"] { color: var(--ok); }
  a.channel { color: var(--accent); cursor: pointer; text-decoration: underline; overflow-wrap: anywhere; }
  body[data-stale] main table, body[data-stale] .stats { opacity: .45; }
  tr.selected td { background: #eef5fc; }
  td.id { word-break: break-all; color: var(--muted); font: 12px/1.4 ui-monospace, SFMono-Regular, Menlo, monospace; }
  #whFailures tr:has(+ tr td.id) td { border-bottom: none; }
  #watchState { font-size: .9rem; color: var(--muted); word-break: break-word; }
  #watchState[data-state="subscribed"] { color: var(--ok); }
  #watchState[data-state="connecting"], #watchState[data-state="reconnecting"] { color: var(--warn); }
  #watchState[data-state="refused"], #watchState[data-state="closed"] { color: var(--bad); font-weight: 600; }
  ol.frames li[data-kind="join"], ol.frames li[data-kind="leave"], ol.frames li[data-kind="subscribed"], ol.frames li[data-kind="resumed"] { color: var(--muted); }
  ol.frames li[data-kind="error"], ol.frames li[data-kind="close"] { color: var(--bad); }
  #receipts tr[data-state="acked"] td.state { color: var(--ok); }
  #receipts tr[data-state="pending"] td.state { color: var(--warn); font-weight: 600; }
  #receipts tr[data-state="missed"] td.state { color: var(--bad); font-weight: 600; }
</style>
</head>
<body>
<header>
  <h1>realtime-gateway admin</h1>
  <input id="token" type="password" placeholder="paste an admin token (role admin)" autocomplete="off" aria-label="admin token">
  <button id="use">Use token</button>
  <button id="dev" class="quiet" hidden>Get a development token</button>
  <span id="status" data-state="idle">no token yet</span>
</header>
<main>
  <section>
    <h2>Traffic</h2>
    <div class="stats">
      <div class="stat"><b id="conns">–</b><span>connections</span></div>
      <div class="stat"><b id="msgRate">–</b><span>messages sent / s</span></div>
      <div class="stat"><b id="connRate">–</b><span>connections opened / s</span></div>
    </div>
  </section>
  <section class="wide">
    <h2>Replicas</h2>
    <div class="scroll"><table id="nodes" class="stack"><thead><tr><th>node</th><th>version</th><th class="num">up</th><th class="num">alerts</th><th class="num">chat</th><th class="num">signaling</th></tr></thead><tbody></tbody></table></div>
  </section>
  <section>
    <h2>Busiest channels</h2>
    <div class="scroll"><table id="channels" class="stack"><thead><tr><th>channel</th><th class="num">members</th></tr></thead><tbody></tbody></table></div>
    <h2 id="membersTitle" style="margin-top:.8rem" hidden>Members</h2>
    <div class="scroll"><table id="members" class="stack" hidden><thead><tr><th>user</th><th>node</th><th></th></tr></thead><tbody></tbody></table></div>
  </section>
  <section id="live">
    <h2>Live view</h2>
    <label>Channel <input id="watchChannel" placeholder="chat:&lt;room&gt;, alerts, signaling:&lt;id&gt; (or click one in Busiest channels)"></label>
    <div class="row">
      <button id="watch">Watch</button>
      <button id="unwatch" class="quiet">Stop watching</button>
      <span id="watchState" data-state="idle">not watching</span>
    </div>
    <ol id="watchLog" class="frames" aria-live="polite"></ol>
    <label>WebSocket endpoint (public port) <input id="wsUrl" spellcheck="false" autocomplete="off"></label>
    <p class="hint">This page is on the internal port; it watches over <code>/ws</code> on the public one. Behind a proxy, type its address (<code>wss://host/ws</code>); clear the field for the default. Watching a chat room makes you one of its members: listed, and its members see you join and leave.</p>
  </section>
  <section id="alert">
    <h2>Alert receipts</h2>
    <div class="row">
      <input id="alertId" style="flex:1 1 14rem;width:auto" placeholder="an alert id, as POST /api/alerts answered it" spellcheck="false" autocomplete="off" aria-label="alert id">
      <button id="showAlert">Show</button>
    </div>
    <div id="alertResult" class="result"></div>
    <div class="stats" id="alertStats" hidden>
      <div class="stat"><b id="rcDelivered">–</b><span>got it</span></div>
      <div class="stat"><b id="rcAcked">–</b><span>acknowledged</span></div>
      <div class="stat"><b id="rcPending">–</b><span>pending</span></div>
    </div>
    <div class="scroll"><table id="receipts" class="stack" hidden><thead><tr><th>user</th><th>got it</th><th>acknowledged</th></tr></thead><tbody></tbody></table></div>
    <p class="hint">For alerts published with <code>"ack": {"within_s": N}</code>, across every replica, refreshed every 2 s. Pending: targeted users who have not acknowledged (after <code>within_s</code> they were escalated). Link to one alert: <code>/admin#alert=&lt;id&gt;</code>.</p>
  </section>
  <section id="webhooks" hidden>
    <h2>Webhooks</h2>
    <div class="stats">
      <div class="stat"><b id="whQueue">–</b><span>events waiting</span></div>
      <div class="stat"><b id="whInFlight">–</b><span>requests in flight (this replica)</span></div>
    </div>
    <div class="scroll"><table id="whFailures" class="stack"><thead><tr><th>time</th><th>event</th><th>answer</th><th>result</th></tr></thead><tbody></tbody></table></div>
    <p class="hint">Recent failed attempts on the replica serving this page (at most 50), each with its webhook-id (the receiver's logs can be searched for it).</p>
  </section>
  <section>
    <h2>Publish</h2>
    <label>Channel <input id="pubChannel" value="alerts" placeholder="alerts, user:&lt;sub&gt;, chat:&lt;room&gt;, signaling:&lt;id&gt;"></label>
    <label>Data (a JSON object) <textarea id="pubData" rows="3">{"text": "hello from the admin console"}</textarea></label>
    <button id="publish">Publish</button>
    <div id="pubResult" class="result"></div>
  </section>
  <section>
    <h2>Disconnect a user</h2>
    <label>User (sub) <input id="discUser"></label>
    <label>Reason (optional) <input id="discReason" maxlength="100"></label>
    <label>Ban for seconds (optional) <input id="discBan" type="number" min="1" max="2592000"></label>
    <button id="disconnect" class="danger">Disconnect</button>
    <div id="discResult" class="result"></div>
  </section>
  <section>
    <h2>Revoke tokens</h2>
    <label>User (sub): their tokens issued before <input id="revUser"></label>
    <label>Issued before (unix seconds, optional; default now) <input id="revBefore" type="number" min="0"></label>
    <label>Or one token id (jti) <input id="revJti"></label>
    <label>For seconds (optional; default 86400) <input id="revTtl" type="number" min="1" max="2592000"></label>
    <p class="hint">Connections opened with a revoked token close (4001) and the token is refused; the user can connect again with a new one.</p>
    <button id="revoke" class="danger">Revoke</button>
    <div id="revResult" class="result"></div>
  </section>
</main>
<script src="/admin/client.js"></script>
<script>
(function () {
  var DEV_TOKEN = __DEV_TOKEN__;
  var PUBLIC_PORT = __PUBLIC_PORT__;
  var $ = function (id) { return document.getElementById(id); };
  var token = sessionStorage.getItem('rg-admin-token') || '';
  var previous;
  var selected;
  var timer;

  function status(state, text) { $('status').dataset.state = state; $('status').textContent = text; }
  function cell(row, text, cls) { var td = document.createElement('td'); td.textContent = text; if (cls) td.className = cls; row.appendChild(td); return td; }
  // On a phone each row of a table.stack is a block of "label value" lines: the labels are the header's.
  function labels(table) {
    var names = Array.prototype.map.call(table.tHead.rows[0].cells, function (th) { return th.textContent; });
    Array.prototype.forEach.call(table.tBodies[0].rows, function (row) {
      if (row.cells.length === names.length) Array.prototype.forEach.call(row.cells, function (td, i) { td.dataset.label = names[i]; });
    });
  }
  function clear(table) { var body = table.tBodies[0]; while (body.firstChild) body.removeChild(body.firstChild); return body; }
  function uptime(s) { return s >= 86400 ? Math.floor(s / 86400) + ' d' : s >= 3600 ? Math.floor(s / 3600) + ' h' : s >= 60 ? Math.floor(s / 60) + ' min' : s + ' s'; }

  function api(method, path, body) {
    return fetch(path, {
      method: method,
      headers: Object.assign({ Authorization: 'Bearer ' + token }, body ? { 'Content-Type': 'application/json' } : {}),
      body: body ? JSON.stringify(body) : undefined,
    }).then(function (res) {
      return res.json().catch(function () { return {}; }).then(function (json) { return { status: res.status, body: json }; });
    });
  }

  function show(result, answer) {
    var ok = answer.status >= 200 && answer.status < 300;
    result.dataset.ok = String(ok);
    result.textContent = ok ? answer.status + ' ' + JSON.stringify(answer.body) : answer.status + ' ' + (answer.body.error || '') + ': ' + (answer.body.message || '');
  }

  function render(nodes) {
    var body = clear($('nodes'));
    var total = 0, sent = 0, opened = 0;
    var channels = {};
    nodes.forEach(function (n) {
      var c = n.connections || {};
      var row = document.createElement('tr');
      row.dataset.node = n.id;
      cell(row, n.id); cell(row, n.version); cell(row, uptime(n.uptime_s), 'num');
      cell(row, String(c.alerts || 0), 'num'); cell(row, String(c.chat || 0), 'num'); cell(row, String(c.signaling || 0), 'num');
      body.appendChild(row);
      Object.keys(c).forEach(function (g) { total += c[g]; });
      sent += n.messages_sent || 0; opened += n.connections_opened || 0;
      (n.channels || []).forEach(function (ch) { channels[ch.channel] = (channels[ch.channel] || 0) + ch.members; });
    });
    labels($('nodes'));
    $('conns').textContent = String(total);
    var now = Date.now();
    if (previous) {
      var dt = (now - previous.at) / 1000;
      $('msgRate').textContent = String(Math.max(0, Math.round((sent - previous.sent) / dt)));
      $('connRate').textContent = (Math.max(0, (opened - previous.opened) / dt)).toFixed(1);
    }
    previous = { at: now, sent: sent, opened: opened };
    var list = Object.keys(channels).map(function (k) { return { channel: k, members: channels[k] }; })
      .sort(function (a, b) { return b.members - a.members || (a.channel < b.channel ? -1 : 1); }).slice(0, 15);
    var cbody = clear($('channels'));
    list.forEach(function (ch) {
      var row = document.createElement('tr');
      row.dataset.channel = ch.channel;
      if (ch.channel === selected) row.className = 'selected';
      var name = cell(row, '');
      // Selecting a channel watches it live; a room or consultation also lists its members.
      var a = document.createElement('a');
      a.className = 'channel'; a.textContent = ch.channel;
      // Selecting a channel shows its members and readies the live view; watching is a separate step (Watch), since a
      // watcher of a room with presence becomes one of its members, announced to everyone in it.
      a.onclick = function () { selected = ch.channel; $('pubChannel').value = ch.channel; $('watchChannel').value = ch.channel; members(); render(nodes); };
      name.appendChild(a);
      cell(row, String(ch.members), 'num');
      cbody.appendChild(row);
    });
    labels($('channels'));
  }

  function members() {
    if (!selected) return;
    if (!/^(chat|signaling):/.test(selected)) { $('membersTitle').hidden = true; $('members').hidden = true; return; }
    api('GET', '/api/channels/' + encodeURIComponent(selected) + '/presence').then(function (answer) {
      $('membersTitle').hidden = false; $('members').hidden = false;
      $('membersTitle').textContent = 'Members of ' + selected;
      var body = clear($('members'));
      (answer.body.members || []).forEach(function (m) {
        var row = document.createElement('tr');
        row.dataset.user = m.user;
        cell(row, m.user); cell(row, m.node);
        var action = cell(row, '');
        if (/^chat:/.test(selected)) {
          var b = document.createElement('button');
          b.className = 'danger'; b.textContent = 'Disconnect';
          b.onclick = function () { $('discUser').value = m.user; disconnect(); };
          action.appendChild(b);
        }
        body.appendChild(row);
      });
      labels($('members'));
    });
  }

  // An alert's receipts: who got it, who acknowledged it, who is pending (GET /api/alerts/<id>/receipts).
  var alertId = (/^#alert=(.+)$/.exec(location.hash) || [])[1];
  if (alertId) { try { alertId = decodeURIComponent(alertId); } catch (e) { alertId = undefined; } }
  function time(ts) { return new Date(ts).toLocaleTimeString(); }
  function receipts() {
    if (!alertId || !token) return;
    var id = alertId;
    api('GET', '/api/alerts/' + encodeURIComponent(id) + '/receipts').then(function (answer) {
      if (id !== alertId) return;
      var ok = answer.status === 200;
      $('alertStats').hidden = !ok; $('receipts').hidden = !ok;
      var result = $('alertResult');
      result.dataset.ok = String(ok);
      if (!ok) { result.textContent = answer.status + ' ' + (answer.body.error || '') + ': ' + (answer.body.message || ''); return; }
      var r = answer.body;
      result.textContent = 'alert ' + r.id + ' · ' + new Date().toLocaleTimeString();
      $('rcDelivered').textContent = String(r.delivered.length);
      $('rcAcked').textContent = String(r.acked.length);
      $('rcPending').textContent = String(r.pending.length);
      // One row per user: the pending first (someone must act), then by when they acknowledged or got it.
      var users = {};
      var order = [];
      function entry(user) { if (!users[user]) { users[user] = { user: user }; order.push(users[user]); } return users[user]; }
      r.pending.forEach(function (u) { entry(u).pending = true; });
      r.delivered.forEach(function (d) { entry(d.user).delivered = d.ts; });
      r.acked.forEach(function (a) { entry(a.user).acked = a.ts; });
      var body = clear($('receipts'));
      order.sort(function (x, y) { return (y.pending ? 1 : 0) - (x.pending ? 1 : 0) || (x.acked || x.delivered || 0) - (y.acked || y.delivered || 0); });
      order.forEach(function (e) {
        var row = document.createElement('tr');
        row.dataset.user = e.user;
        row.dataset.state = e.acked !== undefined ? 'acked' : e.pending ? (e.delivered !== undefined ? 'pending' : 'missed') : 'delivered';
        cell(row, e.user);
        cell(row, e.delivered !== undefined ? time(e.delivered) : 'not yet');
        cell(row, e.acked !== undefined ? time(e.acked) : e.pending ? 'pending' : '—', 'state');
        body.appendChild(row);
      });
      labels($('receipts'));
    }, function () { $('alertResult').dataset.ok = 'false'; $('alertResult').textContent = 'the gateway does not answer'; });
  }
  function showAlert(id) {
    id = (id || '').trim();
    if (!id) return;
    alertId = id;
    $('alertId').value = id;
    if (location.hash !== '#alert=' + encodeURIComponent(id)) history.replaceState(null, '', '#alert=' + encodeURIComponent(id));
    clear($('receipts'));
    receipts();
  }

  // Events out: shown only when WEBHOOK_URL is set on this replica.
  function webhooks() {
    api('GET', '/api/webhooks').then(function (answer) {
      if (answer.status !== 200 || !answer.body.enabled) { $('webhooks').hidden = true; return; }
      $('webhooks').hidden = false;
      $('whQueue').textContent = answer.body.queue === null ? '?' : String(answer.body.queue);
      $('whInFlight').textContent = String(answer.body.in_flight);
      var body = clear($('whFailures'));
      answer.body.failures.forEach(function (f) {
        var row = document.createElement('tr');
        row.dataset.id = f.id;
        cell(row, new Date(f.at).toLocaleTimeString()); cell(row, f.type);
        cell(row, f.status !== undefined ? String(f.status) : (f.error || '')); cell(row, f.result);
        body.appendChild(row);
        // The whole webhook-id on a line of its own, to copy and search the receiver's logs for.
        var idRow = document.createElement('tr');
        cell(idRow, f.id, 'id').colSpan = 4;
        body.appendChild(idRow);
      });
      labels($('whFailures'));
    });
  }

  function refresh() {
    if (!token) return;
    api('GET', '/api/nodes').then(function (answer) {
      if (answer.status !== 200) {
        status('error', answer.status + ' ' + (answer.body.error || '') + ': ' + (answer.body.message || 'request failed'));
        document.body.dataset.stale = 'true';
        return;
      }
      delete document.body.dataset.stale;
      status('live', 'live · ' + answer.body.nodes.length + ' replica(s) · ' + new Date().toLocaleTimeString());
      render(answer.body.nodes);
      members();
      webhooks();
      receipts();
    }, function () { status('error', 'the gateway does not answer'); document.body.dataset.stale = 'true'; });
  }

  function start(t) {
    token = t.trim();
    sessionStorage.setItem('rg-admin-token', token);
    previous = undefined;
    status('idle', 'connecting…');
    clearInterval(timer);
    refresh();
    timer = setInterval(refresh, 2000);
    if (live.handle) watch(live.handle.channel); // watched again with this token
  }

  // The live view: one channel at a time over /ws on the public port, through the SDK (reconnects, resumes
  // from the channel's position, and asks the server why an upgrade was refused). The token goes in the
  // \`bearer\` subprotocol, never in the URL.
  var RealtimeClient = window.RealtimeGateway && window.RealtimeGateway.RealtimeClient;
  var DEFAULT_WS = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.hostname + ':' + PUBLIC_PORT + '/ws';
  var MAX_FRAMES = 200;
  var live = {};

  function watchState(state, text) { $('watchState').dataset.state = state; $('watchState').textContent = text; }
  function note(kind, text) {
    var list = $('watchLog');
    var li = document.createElement('li');
    li.dataset.kind = kind;
    li.textContent = new Date().toTimeString().slice(0, 8) + ' ' + kind + ' ' + text;
    list.appendChild(li);
    while (list.childNodes.length > MAX_FRAMES) list.removeChild(list.firstChild);
    list.scrollTop = list.scrollHeight;
  }
  // The address typed (a proxy's) is kept for the next visit; an empty field means the default.
  function wsUrl() {
    var value = $('wsUrl').value.trim();
    if (!value || value === DEFAULT_WS) { localStorage.removeItem('rg-admin-ws-url'); $('wsUrl').value = DEFAULT_WS; return DEFAULT_WS; }
    localStorage.setItem('rg-admin-ws-url', value);
    return value;
  }

  function stopWatching(text) {
    var client = live.client;
    live = {}; // first: the close that follows is ours, not news
    if (client) client.close();
    watchState('stopped', text);
  }

  function watch(channel) {
    channel = (channel || '').trim();
    if (!channel) return watchState('idle', 'type a channel, or click one in Busiest channels');
    if (!token) return watchState('refused', 'paste an admin token first');
    if (!RealtimeClient) return watchState('refused', 'the SDK (/admin/client.js) did not load');
    var url = wsUrl();
    $('watchChannel').value = channel;
    if (live.client && live.handle && live.handle.channel === channel && live.handle.state !== 'ended' && live.url === url && live.token === token) return;
    var parsed;
    try { parsed = new URL(url); } catch (e) { parsed = undefined; }
    if (!parsed || (parsed.protocol !== 'ws:' && parsed.protocol !== 'wss:')) { stopWatching(''); return watchState('refused', 'not a WebSocket address: ' + url + ' (ws://host:port/ws or wss://host/ws)'); }
    var client = live.client;
    var fresh = !client || live.url !== url || live.token !== token;
    if (fresh) {
      stopWatching('');
      var jwt = token;
      client = new RealtimeClient({ url: url, tokenIn: 'subprotocol', heartbeatMs: 25000, getToken: function () { return jwt; } });
      live = { client: client, url: url, token: jwt };
      // Connection events matter while the watched channel is still wanted (not refused, not stopped).
      var watching = function () { return live.client === client && live.handle && live.handle.state !== 'ended'; };
      client.on('open', function () { if (watching()) watchState('connecting', 'connected, subscribing to ' + live.handle.channel + '…'); });
      client.on('close', function (e) {
        if (!watching()) return;
        var text = e.code + (e.reason ? ' ' + e.reason : '');
        note('close', text + (e.reconnectInMs !== undefined ? ', reconnecting in ' + e.reconnectInMs + ' ms' : ''));
        // 1006 with no refusal the SDK could read: nothing answered, or a refusal this page may not read.
        var hint = e.code === 1006 && !e.reason ? ': no answer from ' + live.url + ', or refused for a reason this page cannot read (the address? ALLOWED_ORIGINS?)' : '';
        if (e.reconnectInMs !== undefined) watchState('reconnecting', 'reconnecting in ' + e.reconnectInMs + ' ms (' + text + hint + ')');
      });
      client.on('error', function (error) {
        if (!watching() || !error.fatal) return;
        // A refused upgrade (401, 403 forbidden_origin or banned, ...) or a close not to retry (4003): stopped.
        note('error', error.message);
        watchState(error.kind === 'http' ? 'refused' : 'closed', error.message + ' (not retried; Watch tries again)');
        live.client = undefined;
      });
    } else if (live.handle) live.handle.unsubscribe();
    $('watchLog').textContent = '';
    var handle;
    try { handle = client.subscribe(channel); } catch (error) { stopWatching(''); return watchState('refused', error.message); }
    live.handle = handle;
    var mine = function () { return live.handle === handle; };
    handle.on('subscribed', function (f) {
      if (!mine()) return;
      var at = f.id ? ' at ' + f.id : '';
      note('subscribed', channel + at);
      watchState('subscribed', 'subscribed to ' + channel + at + ' · live');
    });
    handle.on('publication', function (f) { if (mine()) note('publication', (f.user || 'server') + ': ' + JSON.stringify(f.data) + (f.id ? '  (' + f.id + ')' : '') + (f.ack ? ' · asks for ack' : '') + (f.redelivered ? ' · sent again: not acknowledged in time' : '')); });
    handle.on('join', function (f) { if (mine()) note('join', f.user + ' joined'); });
    handle.on('leave', function (f) { if (mine()) note('leave', f.user + ' left'); });
    handle.on('private', function (f) { if (mine()) note('private', f.from + ' → ' + f.to + ': ' + f.message); });
    handle.on('resumed', function (r) { if (mine()) note('resumed', r.recovered ? 'nothing missed' : 'some messages were lost meanwhile (history trimmed or lost)'); });
    handle.on('error', function (error) {
      if (!mine()) return;
      note('error', error.message);
      // Refused for good (forbidden_channel, unknown_channel, ...): the server's code and message, and the rest
      // of the page carries on. Otherwise (unavailable) the SDK subscribes again after a backoff.
      watchState(error.fatal ? 'refused' : 'reconnecting', (error.fatal ? 'refused: ' : '') + error.message);
    });
    watchState('connecting', client.connected ? 'subscribing to ' + channel + '…' : 'connecting to ' + url + '…');
    if (fresh) client.connect();
  }

  function disconnect() {
    // Exactly as shown: a sub may begin or end with spaces, and trimming would disconnect someone else.
    var body = { user: $('discUser').value };
    if ($('discReason').value.trim()) body.reason = $('discReason').value.trim();
    if ($('discBan').value) body.ban_seconds = Number($('discBan').value);
    // Says exactly what will happen, ban included: a ban left in the form must not surprise anyone.
    var what = 'Disconnect "' + body.user + '" on every replica' + (body.ban_seconds ? ' and ban them for ' + body.ban_seconds + ' s' : '') + '?';
    if (!window.confirm(what)) return;
    api('POST', '/api/disconnect', body).then(function (answer) { show($('discResult'), answer); refresh(); });
  }

  function revoke() {
    // Exactly as typed: a sub or jti may begin or end with spaces, and trimming would revoke someone else's. Both
    // or neither filled in: the server's 400 says what to fix.
    var body = {};
    if ($('revUser').value !== '') body.user = $('revUser').value;
    if ($('revJti').value !== '') body.jti = $('revJti').value;
    if ($('revBefore').value) body.issued_before = Number($('revBefore').value);
    if ($('revTtl').value) body.ttl_s = Number($('revTtl').value);
    var what = body.jti !== undefined && body.user === undefined ? 'the token with jti "' + body.jti + '"' : 'the tokens of "' + body.user + '" issued before ' + (body.issued_before ? new Date(body.issued_before * 1000).toISOString() : 'now');
    if (!window.confirm('Revoke ' + what + ' on every replica' + (body.ttl_s ? ' for ' + body.ttl_s + ' s' : '') + '?')) return;
    api('POST', '/api/revoke', body).then(function (answer) { show($('revResult'), answer); refresh(); });
  }

  $('use').onclick = function () { start($('token').value); };
  $('token').onkeydown = function (e) { if (e.key === 'Enter') start($('token').value); };
  $('publish').onclick = function () {
    var data;
    try { data = JSON.parse($('pubData').value); } catch (e) { show($('pubResult'), { status: 0, body: { error: 'not JSON', message: e.message } }); return; }
    api('POST', '/api/publish', { channel: $('pubChannel').value.trim(), data: data }).then(function (answer) { show($('pubResult'), answer); });
  };
  $('showAlert').onclick = function () { showAlert($('alertId').value); };
  $('alertId').onkeydown = function (e) { if (e.key === 'Enter') showAlert($('alertId').value); };
  if (alertId) $('alertId').value = alertId;
  window.addEventListener('hashchange', function () { var m = /^#alert=(.+)$/.exec(location.hash); if (m) { try { showAlert(decodeURIComponent(m[1])); } catch (e) { /* not an id */ } } });
  $('disconnect').onclick = disconnect;
  $('revoke').onclick = revoke;
  $('watch').onclick = function () { watch($('watchChannel').value); };
  $('watchChannel').onkeydown = function (e) { if (e.key === 'Enter') watch($('watchChannel').value); };
  $('unwatch').onclick = function () { stopWatching(live.handle ? 'stopped watching ' + live.handle.channel : 'not watching'); };
  $('wsUrl').placeholder = DEFAULT_WS;
  $('wsUrl').value = localStorage.getItem('rg-admin-ws-url') || DEFAULT_WS;
  $('wsUrl').onchange = function () { wsUrl(); if (live.handle) watch(live.handle.channel); };
  if (DEV_TOKEN) {
    $('dev').hidden = false;
    $('dev').onclick = function () {
      fetch('/admin/dev-token', { method: 'POST' }).then(function (res) { return res.json(); }).then(function (json) { $('token').value = json.token; start(json.token); });
    };
  }
  if (token) start(token);
})();
</script>
</body>
</html>
`;
