/**
 * The demo console's Web Push section (issue 25: "the demo page can register a push subscription and show a
 * received push"), kept apart from the rest of the page: its HTML block, the page's script (`/demo/push.js`) and
 * the service worker (`/demo/sw.js`, scope `/demo`). The page registers the service worker, reads the VAPID key
 * from the public port's `/push/vapid-public-key`, subscribes with `pushManager.subscribe` and registers the
 * subscription with `POST /push/subscriptions` under the token typed above; every push the service worker
 * receives is posted to the page and listed. Subscribing needs the browser vendor's push service (Chromium:
 * Google's, on the Internet): when it cannot be reached the page says so, and pushes delivered to the service
 * worker by other means (DevTools) are still shown. Nothing here is a token or an endpoint in a log.
 */

/** The block the demo page includes (an own fieldset, and the script that drives it). */
export const DEMO_PUSH_SECTION = `<section id="push">
  <h2>Web Push (this browser)</h2>
  <button id="push-enable">Enable push for this token</button>
  Push: <span id="push-state" data-state="off">off</span>
  <p id="push-why" hidden></p>
  <ol id="push-log" class="frames"></ol>
</section>
<style>
  #push-state[data-state="subscribed"] { color: #0a0; } #push-state[data-state="failed"] { color: #a00; }
  #push-why { color: #a00; font-weight: bold; margin: .4rem 0 0; }
</style>
<script src="/demo/push.js"></script>`;

/** What the page shows when the browser's push service cannot be reached (a test asserts it). */
export const PUSH_SERVICE_UNREACHABLE =
  "This browser could not get a subscription from its push service: it is unreachable from here, or this browser has none (Chromium subscribes through Google's push service, on the Internet). Pushes delivered to this page's service worker are still listed below.";

/** `/demo/push.js`: the section's behaviour. Plain ES5-ish JS, as the rest of the demo page. */
export const DEMO_PUSH_SCRIPT = `(function () {
  var $ = function (id) { return document.getElementById(id); };
  var UNREACHABLE = ${JSON.stringify(PUSH_SERVICE_UNREACHABLE)};
  function state(text, kind) { $('push-state').textContent = text; $('push-state').dataset.state = kind; }
  function why(text) { $('push-why').textContent = text; $('push-why').hidden = !text; }
  function show(kind, text) {
    var li = document.createElement('li');
    li.dataset.kind = kind;
    li.textContent = new Date().toISOString().slice(11, 23) + ' ' + kind + ' ' + text;
    $('push-log').appendChild(li);
  }
  // The public port, where /push/* are: the Gateway field's address over HTTP(S).
  function base() { return $('gateway').value.trim().replace(/^ws/, 'http').replace(/[/]+$/, ''); }
  if (!('serviceWorker' in navigator) || !('PushManager' in window)) {
    $('push-enable').disabled = true;
    why('This browser has no Web Push here: it needs a secure context (https, or http on localhost / 127.0.0.1) and a browser that supports it.');
    return;
  }
  // Every push the service worker receives comes here (it posts to each window it controls or may control).
  navigator.serviceWorker.addEventListener('message', function (event) {
    if (event.data && event.data.type === 'push') show('push', JSON.stringify(event.data.payload));
  });
  navigator.serviceWorker.startMessages();
  var registration = navigator.serviceWorker.register('/demo/sw.js', { scope: '/demo' }).then(function () {
    return navigator.serviceWorker.ready;
  }).then(function (ready) {
    $('push').dataset.worker = 'ready';
    show('worker', 'service worker registered for ' + ready.scope);
    return ready;
  }, function (error) {
    why('The service worker could not be registered: ' + error.message);
    throw error;
  });
  function fail(text) { state('failed', 'failed'); why(text); }
  $('push-enable').onclick = function () {
    var token = $('token').value.trim();
    if (!token) return fail('Paste a token above first: the subscription is registered for its user.');
    why('');
    state('subscribing', 'subscribing');
    registration.then(function (ready) {
      return fetch(base() + '/push/vapid-public-key').then(function (res) {
        return res.json().then(function (body) {
          if (!res.ok) throw { shown: 'The gateway has no Web Push key (' + (body.message || res.status) + '): set VAPID_PUBLIC_KEY, VAPID_PRIVATE_KEY and VAPID_SUBJECT (npm run vapid).' };
          return body.key;
        });
      }).then(function (key) {
        return ready.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key }).catch(function (error) {
          // Judged by the permission, not the error: Chromium without its push service says "permission denied" too.
          if (Notification.permission !== 'granted') throw { shown: 'Notifications are not allowed for this page (' + Notification.permission + '): allow them (site settings), then press the button again.' };
          throw { shown: UNREACHABLE + ' The browser said: ' + error.name + ': ' + error.message, unreachable: true };
        });
      }).then(function (subscription) {
        return fetch(base() + '/push/subscriptions', {
          method: 'POST',
          headers: { authorization: 'Bearer ' + token, 'content-type': 'application/json' },
          body: JSON.stringify(subscription),
        }).then(function (res) {
          return res.json().then(function (body) {
            if (!res.ok) throw { shown: 'The gateway refused the subscription: ' + (body.message || res.status) };
            state('subscribed', 'subscribed');
            show('subscribed', 'pushes for this token\\'s user come to this browser (' + res.status + ')');
          });
        });
      });
    }).catch(function (error) {
      if (error && error.unreachable) $('push').dataset.unreachable = 'true';
      fail(error && error.shown ? error.shown : 'Push could not be enabled: ' + (error && error.message));
    });
  };
})();
`;

/**
 * `/demo/sw.js`: shows each push as a notification tagged with the alert's id (a push sent twice for one alert,
 * as after a replica died mid-escalation, replaces its notification rather than adding one), and posts it to the
 * demo pages open.
 */
export const DEMO_SERVICE_WORKER = `self.addEventListener('install', function () { self.skipWaiting(); });
self.addEventListener('activate', function (event) { event.waitUntil(self.clients.claim()); });
self.addEventListener('push', function (event) {
  var payload;
  try { payload = event.data ? event.data.json() : null; } catch (error) { payload = { text: event.data.text() }; }
  var text = payload && payload.data && typeof payload.data.text === 'string' ? payload.data.text : 'New alert: open the app';
  var shown = self.registration.showNotification('Alert', { body: text, tag: payload && payload.id ? String(payload.id) : undefined, data: payload })
    // Without the notification permission (a page that never asked) there is nothing to show: the page still lists it.
    .catch(function () {});
  var told = self.clients.matchAll({ type: 'window', includeUncontrolled: true }).then(function (clients) {
    clients.forEach(function (client) { client.postMessage({ type: 'push', payload: payload }); });
  });
  event.waitUntil(Promise.all([shown, told]));
});
self.addEventListener('notificationclick', function (event) {
  event.notification.close();
  event.waitUntil(self.clients.openWindow('/demo'));
});
`;
