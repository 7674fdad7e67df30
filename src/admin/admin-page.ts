/**
 * The admin console (`GET /admin`, internal port): one static page, no build step. It calls the server API with
 * the admin token the operator pastes (kept in this tab's sessionStorage only) and refreshes itself every 2 s:
 * the replicas, the busiest channels with their members, message and connection rates, a publish form and
 * disconnect buttons. `__DEV_TOKEN__` is replaced by `true` when the server offers development tokens.
 */
export const ADMIN_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>realtime-gateway admin</title>
<style>
  :root { --fg: #1d232a; --muted: #5b6670; --line: #d9dee3; --bg: #f6f7f9; --ok: #1a7f37; --bad: #b42318; --accent: #0b5cad; }
  * { box-sizing: border-box; }
  body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: var(--fg); background: var(--bg); }
  header { display: flex; flex-wrap: wrap; gap: .6rem 1rem; align-items: center; padding: .8rem 1rem; background: #fff; border-bottom: 1px solid var(--line); }
  header h1 { font-size: 1.1rem; margin: 0 auto 0 0; }
  main { display: grid; grid-template-columns: repeat(auto-fit, minmax(min(22rem, 100%), 1fr)); gap: 1rem; padding: 1rem; }
  section { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: .8rem 1rem; min-width: 0; }
  section h2 { font-size: 1rem; margin: 0 0 .6rem; }
  table { width: 100%; border-collapse: collapse; font-size: .92rem; }
  .scroll { overflow-x: auto; }
  th, td { text-align: left; padding: .3rem .4rem; border-bottom: 1px solid var(--line); vertical-align: top; white-space: nowrap; }
  th { color: var(--muted); font-weight: 600; }
  td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
  input, textarea, select, button { font: inherit; }
  input, textarea, select { width: 100%; padding: .35rem .5rem; border: 1px solid var(--line); border-radius: 6px; }
  label { display: block; margin: .4rem 0; color: var(--muted); font-size: .9rem; }
  button { padding: .35rem .8rem; border-radius: 6px; border: 1px solid var(--accent); background: var(--accent); color: #fff; cursor: pointer; }
  button.quiet { background: #fff; color: var(--accent); }
  button.danger { background: var(--bad); border-color: var(--bad); }
  #token { width: min(28rem, 100%); }
  .stats { display: flex; flex-wrap: wrap; gap: 1.4rem; }
  .stat b { display: block; font-size: 1.5rem; font-variant-numeric: tabular-nums; }
  .stat span { color: var(--muted); font-size: .85rem; }
  #status { font-size: .9rem; color: var(--muted); }
  #status[data-state="error"] { color: var(--bad); font-weight: 600; }
  #status[data-state="live"] { color: var(--ok); }
  .result { font-size: .9rem; margin-top: .4rem; word-break: break-word; }
  .result[data-ok="false"] { color: var(--bad); }
  a.channel { color: var(--accent); cursor: pointer; text-decoration: underline; }
  body[data-stale] main table, body[data-stale] .stats { opacity: .45; }
  tr.selected td { background: #eef5fc; }
  @media (max-width: 40rem) { main { padding: .6rem; gap: .6rem; } header { padding: .6rem; } th, td { padding: .3rem .2rem; font-size: .85rem; } }
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
  <section>
    <h2>Replicas</h2>
    <div class="scroll"><table id="nodes"><thead><tr><th>node</th><th>version</th><th class="num">up</th><th class="num">alerts</th><th class="num">chat</th><th class="num">signaling</th></tr></thead><tbody></tbody></table></div>
  </section>
  <section>
    <h2>Busiest channels</h2>
    <div class="scroll"><table id="channels"><thead><tr><th>channel</th><th class="num">members</th></tr></thead><tbody></tbody></table></div>
    <h2 id="membersTitle" style="margin-top:.8rem" hidden>Members</h2>
    <div class="scroll"><table id="members" hidden><thead><tr><th>user</th><th>node</th><th></th></tr></thead><tbody></tbody></table></div>
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
</main>
<script>
(function () {
  var DEV_TOKEN = __DEV_TOKEN__;
  var $ = function (id) { return document.getElementById(id); };
  var token = sessionStorage.getItem('rg-admin-token') || '';
  var previous;
  var selected;
  var timer;

  function status(state, text) { $('status').dataset.state = state; $('status').textContent = text; }
  function cell(row, text, cls) { var td = document.createElement('td'); td.textContent = text; if (cls) td.className = cls; row.appendChild(td); return td; }
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
      if (/^(chat|signaling):/.test(ch.channel)) {
        var a = document.createElement('a');
        a.className = 'channel'; a.textContent = ch.channel;
        a.onclick = function () { selected = ch.channel; $('pubChannel').value = ch.channel; members(); render(nodes); };
        name.appendChild(a);
      } else name.textContent = ch.channel;
      cell(row, String(ch.members), 'num');
      cbody.appendChild(row);
    });
  }

  function members() {
    if (!selected) return;
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
  }

  function disconnect() {
    var body = { user: $('discUser').value.trim() };
    if ($('discReason').value.trim()) body.reason = $('discReason').value.trim();
    if ($('discBan').value) body.ban_seconds = Number($('discBan').value);
    // Says exactly what will happen, ban included: a ban left in the form must not surprise anyone.
    var what = 'Disconnect "' + body.user + '" on every replica' + (body.ban_seconds ? ' and ban them for ' + body.ban_seconds + ' s' : '') + '?';
    if (!window.confirm(what)) return;
    api('POST', '/api/disconnect', body).then(function (answer) { show($('discResult'), answer); refresh(); });
  }

  $('use').onclick = function () { start($('token').value); };
  $('token').onkeydown = function (e) { if (e.key === 'Enter') start($('token').value); };
  $('publish').onclick = function () {
    var data;
    try { data = JSON.parse($('pubData').value); } catch (e) { show($('pubResult'), { status: 0, body: { error: 'not JSON', message: e.message } }); return; }
    api('POST', '/api/publish', { channel: $('pubChannel').value.trim(), data: data }).then(function (answer) { show($('pubResult'), answer); });
  };
  $('disconnect').onclick = disconnect;
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
