// Validates Kubernetes objects (a JSON array on stdin) against the schemas of kubernetes-models (the API's own
// OpenAPI schemas) and, for ServiceMonitor, of @kubernetes-models/prometheus-operator (the CRD's schema).
// Prints a JSON array of {object, error} for the invalid ones. ESM-only packages, hence a child process.
const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const objects = JSON.parse(Buffer.concat(chunks).toString());
const modules = {
  v1: 'kubernetes-models/v1',
  'apps/v1': 'kubernetes-models/apps/v1',
  'policy/v1': 'kubernetes-models/policy/v1',
  'autoscaling/v2': 'kubernetes-models/autoscaling/v2',
  'networking.k8s.io/v1': 'kubernetes-models/networking.k8s.io/v1',
  'monitoring.coreos.com/v1': '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1',
};
const problems = [];
for (const object of objects) {
  const name = `${object.apiVersion} ${object.kind} ${object.metadata?.name}`;
  const path = modules[object.apiVersion];
  const Model = path && (await import(path))[object.kind];
  if (!Model) {
    problems.push({ object: name, error: 'no schema for this apiVersion and kind' });
    continue;
  }
  try {
    new Model(object).validate();
  } catch (error) {
    problems.push({ object: name, error: error.message });
  }
}
process.stdout.write(JSON.stringify(problems));
