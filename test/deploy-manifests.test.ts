// The Kubernetes manifests, validated offline: every object against the
// Kubernetes API's OpenAPI schemas (shipped in the kubernetes-models npm
// package, which compiles them to validators), every field name against
// @kubernetes/client-node's model types (the schemas allow unknown fields;
// a misspelt `readOnly` would be silently dropped by the API server), and
// the properties the deployment promises: least privileges for the agent,
// required tokens, a node-scoped pod reader, a persistent server. The TLS
// component's patches are applied and the result validated too.
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as k8s from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { packageRoot } from '../src/util/package-root.js';

const DIR = join(packageRoot(), 'deploy', 'kubernetes');

// apiVersion/kind -> [kubernetes-models module, export, client-node model type]
const MODELS: Record<string, [string, string, string]> = {
  'v1/Namespace': ['kubernetes-models/v1/Namespace', 'Namespace', 'V1Namespace'],
  'v1/ServiceAccount': ['kubernetes-models/v1/ServiceAccount', 'ServiceAccount', 'V1ServiceAccount'],
  'v1/Service': ['kubernetes-models/v1/Service', 'Service', 'V1Service'],
  'v1/Secret': ['kubernetes-models/v1/Secret', 'Secret', 'V1Secret'],
  'apps/v1/DaemonSet': ['kubernetes-models/apps/v1/DaemonSet', 'DaemonSet', 'V1DaemonSet'],
  'apps/v1/StatefulSet': ['kubernetes-models/apps/v1/StatefulSet', 'StatefulSet', 'V1StatefulSet'],
  'rbac.authorization.k8s.io/v1/ClusterRole': ['kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRole', 'ClusterRole', 'V1ClusterRole'],
  'rbac.authorization.k8s.io/v1/ClusterRoleBinding': ['kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRoleBinding', 'ClusterRoleBinding', 'V1ClusterRoleBinding'],
};

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Obj = any;

interface Kustomization {
  namespace: string;
  resources: string[];
  secretGenerator: { name: string; envs: string[] }[];
  images: { name: string; newName: string; newTag: string }[];
}

function loadResources(): Obj[] {
  const kustomization = k8s.loadYaml<Kustomization>(readFileSync(join(DIR, 'kustomization.yaml'), 'utf8'));
  return kustomization.resources.flatMap((file) => k8s.loadAllYaml(readFileSync(join(DIR, file), 'utf8')) as Obj[]);
}

async function validateAgainstSchema(object: Obj): Promise<void> {
  const key = `${object.apiVersion}/${object.kind}`;
  const model = MODELS[key];
  if (!model) throw new Error(`no schema mapped for ${key}`);
  const module = (await import(model[0])) as Record<string, new (data: unknown) => { validate(): void }>;
  new module[model[1]]!(object).validate();
}

/** Field paths the client's model types do not know (recursively). */
function unknownFields(value: Obj, type: string, path: string): string[] {
  if (value === null || value === undefined) return [];
  const array = /^Array<(.+)>$/.exec(type);
  if (array) return (value as Obj[]).flatMap((item, i) => unknownFields(item, array[1]!, `${path}[${i}]`));
  const map = /^\{ \[key: string\]: (.+); \}$/.exec(type);
  if (map) return Object.entries(value).flatMap(([key, item]) => unknownFields(item, map[1]!, `${path}.${key}`));
  const model = (k8s as unknown as Record<string, { getAttributeTypeMap?: () => { baseName: string; type: string }[] }>)[type];
  if (!model?.getAttributeTypeMap) return []; // string, number, IntOrString, Date...
  const attributes = new Map(model.getAttributeTypeMap().map((attribute) => [attribute.baseName, attribute.type]));
  return Object.entries(value).flatMap(([key, item]) => {
    const itemType = attributes.get(key);
    return itemType === undefined ? [`${path}.${key}`] : unknownFields(item, itemType, `${path}.${key}`);
  });
}

/** RFC 6902 add/replace, enough for the TLS component's patches (kustomize applies them for real). */
function applyJsonPatch(target: Obj, operations: { op: string; path: string; value: unknown }[]): void {
  for (const { op, path, value } of operations) {
    const parts = path.slice(1).split('/').map((part) => part.replaceAll('~1', '/').replaceAll('~0', '~'));
    const last = parts.pop()!;
    let parent = target;
    for (const part of parts) {
      parent = parent[Array.isArray(parent) ? Number(part) : part];
      if (parent === undefined) throw new Error(`patch path ${path}: ${part} does not exist`);
    }
    if (op === 'add' && Array.isArray(parent)) {
      if (last === '-') parent.push(value);
      else parent.splice(Number(last), 0, value);
    } else if (op === 'add' || op === 'replace') {
      if (op === 'replace' && !(last in parent)) throw new Error(`patch path ${path}: nothing to replace`);
      parent[Array.isArray(parent) ? Number(last) : last] = value;
    } else {
      throw new Error(`unsupported op ${op}`);
    }
  }
}

function byKind(objects: Obj[], kind: string, name?: string): Obj {
  const found = objects.find((object) => object.kind === kind && (name === undefined || object.metadata.name === name));
  if (!found) throw new Error(`no ${kind} ${name ?? ''}`);
  return found;
}

/** The long options a fleetprof command accepts, from its --help. */
function cliOptions(command: string): Set<string> {
  const help = execFileSync(process.execPath, [join(packageRoot(), 'dist', 'src', 'cli.js'), command, '--help'], { encoding: 'utf8' });
  return new Set([...help.matchAll(/--([a-z][a-z-]*)/g)].map((match) => match[1]!));
}

/** The manifests with a kustomize component's patches applied (as kustomize would), each object validated against the API schema. */
async function withComponent(objects: Obj[], name: string): Promise<Obj[]> {
  const component = k8s.loadYaml<{ patches: { target: { kind: string; name: string }; patch: string }[] }>(readFileSync(join(DIR, 'components', name, 'kustomization.yaml'), 'utf8'));
  const patched = structuredClone(objects);
  for (const { target, patch } of component.patches) applyJsonPatch(byKind(patched, target.kind, target.name), k8s.loadYaml(patch));
  for (const object of patched) {
    await validateAgainstSchema(object);
    expect(unknownFields(object, MODELS[`${object.apiVersion}/${object.kind}`]![2], object.kind)).toEqual([]);
  }
  return patched;
}

describe('deploy/kubernetes', () => {
  const objects = loadResources();

  it('every object validates against the Kubernetes API schema and has no field the API does not know', async () => {
    expect(objects.length).toBeGreaterThanOrEqual(8);
    for (const object of objects) {
      await validateAgainstSchema(object);
      expect(unknownFields(object, MODELS[`${object.apiVersion}/${object.kind}`]![2], `${object.kind}/${object.metadata.name}`)).toEqual([]);
    }
  });

  it('the validation can fail: a wrong type and a misspelt field are caught', async () => {
    const agent = structuredClone(byKind(objects, 'DaemonSet'));
    agent.spec.template.spec.containers[0].securityContext.capabilities.add = 'BPF';
    await expect(validateAgainstSchema(agent)).rejects.toThrow(/must be array/);
    const misspelt = structuredClone(byKind(objects, 'DaemonSet'));
    misspelt.spec.template.spec.containers[0].volumeMounts[0].readonly = true;
    expect(unknownFields(misspelt, 'V1DaemonSet', 'ds')).toEqual(['ds.spec.template.spec.containers[0].volumeMounts[0].readonly']);
  });

  it('the agent runs with exactly the capabilities it needs, host PID, not privileged, on every node', () => {
    const agent = byKind(objects, 'DaemonSet', 'fleetprof-agent');
    const pod = agent.spec.template.spec;
    const container = pod.containers[0];
    expect(pod.hostPID).toBe(true);
    expect(pod.hostNetwork).toBeUndefined();
    expect(pod.tolerations).toEqual([{ operator: 'Exists' }]);
    expect(container.securityContext.privileged).toBe(false);
    expect(container.securityContext.allowPrivilegeEscalation).toBe(false);
    expect(container.securityContext.readOnlyRootFilesystem).toBe(true);
    expect(container.securityContext.capabilities.drop).toEqual(['ALL']);
    expect([...container.securityContext.capabilities.add].sort()).toEqual(['BPF', 'DAC_READ_SEARCH', 'PERFMON', 'SYSLOG', 'SYS_PTRACE', 'SYS_RESOURCE']);
    expect(container.resources.requests.cpu).toBeDefined();
    expect(container.resources.requests.memory).toBeDefined();
    expect(container.resources.limits.memory).toBeDefined();
    // Node name from the downward API, used for the agent's node label and its pod field selector.
    expect(container.env.find((env: Obj) => env.name === 'NODE_NAME').valueFrom.fieldRef.fieldPath).toBe('spec.nodeName');
    expect(container.args).toContain('--node=$(NODE_NAME)');
    // Its only writable mount is its spool; it reads the rest through /proc (host PID).
    for (const mount of container.volumeMounts) if (mount.readOnly !== true) expect(mount.mountPath).toBe('/var/lib/fleetprof/spool');
    expect(pod.serviceAccountName).toBe('fleetprof-agent');
  });

  it('the agent may only read pods (list and watch), nothing else', () => {
    const role = byKind(objects, 'ClusterRole', 'fleetprof-agent');
    expect(role.rules).toEqual([{ apiGroups: [''], resources: ['pods'], verbs: ['list', 'watch'] }]);
    const binding = byKind(objects, 'ClusterRoleBinding', 'fleetprof-agent');
    expect(binding.subjects).toEqual([{ kind: 'ServiceAccount', name: 'fleetprof-agent', namespace: 'fleetprof' }]);
    expect(byKind(objects, 'ServiceAccount', 'fleetprof-agent')).toBeDefined();
  });

  it('tokens are required, generated into the Secret, and the generator writes the keys the pods read', () => {
    const kustomization = k8s.loadYaml<Kustomization>(readFileSync(join(DIR, 'kustomization.yaml'), 'utf8'));
    const generator = kustomization.secretGenerator.find((secret) => secret.name === 'fleetprof-tokens')!;
    const copy = mkdtempSync(join(tmpdir(), 'fleetprof-deploy-'));
    try {
      cpSync(DIR, copy, { recursive: true });
      rmSync(join(copy, 'tokens.env'), { force: true });
      execFileSync('bash', [join(copy, 'generate-tokens.sh')], { stdio: 'ignore' });
      const env = readFileSync(join(copy, generator.envs[0]!), 'utf8');
      const keys = new Map(env.trim().split('\n').map((line) => line.split('=') as [string, string]));
      expect([...keys.keys()].sort()).toEqual(['ingest', 'query']);
      for (const token of keys.values()) expect(token).toMatch(/^[0-9a-f]{64}$/);
      // A second run refuses to overwrite.
      expect(() => execFileSync('bash', [join(copy, 'generate-tokens.sh')], { stdio: 'ignore' })).toThrow();
      for (const object of objects.filter((o) => o.kind === 'DaemonSet' || o.kind === 'StatefulSet')) {
        for (const env of object.spec.template.spec.containers[0].env) {
          const ref = env.valueFrom?.secretKeyRef;
          if (!ref) continue;
          expect(ref.name).toBe('fleetprof-tokens');
          expect(ref.optional).not.toBe(true);
          expect(keys.has(ref.key)).toBe(true);
        }
      }
    } finally {
      rmSync(copy, { recursive: true, force: true });
    }
    const server = byKind(objects, 'StatefulSet').spec.template.spec.containers[0];
    expect(server.env.map((env: Obj) => env.name).sort()).toEqual(['FLEETPROF_INGEST_TOKEN', 'FLEETPROF_QUERY_TOKEN']);
  });

  it('the server is a StatefulSet on a persistent volume, probed, behind its Services', () => {
    const server = byKind(objects, 'StatefulSet', 'fleetprof-server');
    const container = server.spec.template.spec.containers[0];
    expect(server.spec.replicas).toBe(1);
    expect(server.spec.volumeClaimTemplates[0].spec.accessModes).toEqual(['ReadWriteOnce']);
    expect(container.volumeMounts.find((mount: Obj) => mount.name === server.spec.volumeClaimTemplates[0].metadata.name).mountPath).toBe('/data');
    expect(container.args).toContain('--data-dir=/data');
    // Alive is /healthz; ready is /readyz (the store answers a read), so a server whose database is gone leaves the Service.
    for (const probe of ['startupProbe', 'livenessProbe']) expect(container[probe].httpGet.path).toBe('/healthz');
    expect(container.readinessProbe.httpGet.path).toBe('/readyz');
    const headless = byKind(objects, 'Service', server.spec.serviceName);
    expect(headless.spec.clusterIP).toBe('None');
    const labels = server.spec.template.metadata.labels;
    for (const service of objects.filter((object) => object.kind === 'Service')) {
      for (const [key, value] of Object.entries(service.spec.selector)) expect(labels[key]).toBe(value);
      for (const port of service.spec.ports) expect(container.ports.map((p: Obj) => p.name)).toContain(port.targetPort);
    }
    // The agent pushes to that Service.
    const agent = byKind(objects, 'DaemonSet').spec.template.spec.containers[0];
    expect(agent.args).toContain('--server=http://fleetprof.fleetprof.svc:4100');
  });

  it('every flag in the manifests is one the CLI accepts', () => {
    for (const [kind, command] of [['DaemonSet', 'agent'], ['StatefulSet', 'server']] as const) {
      const args: string[] = byKind(objects, kind).spec.template.spec.containers[0].args;
      expect(args[0]).toBe(command);
      const known = cliOptions(command);
      for (const arg of args.slice(1)) expect(known, arg).toContain(/^--([a-z-]+)/.exec(arg)![1]);
    }
  });

  it('the TLS component\'s patches apply and the result still validates', async () => {
    const patched = await withComponent(objects, 'tls');
    const server = byKind(patched, 'StatefulSet').spec.template.spec.containers[0];
    expect(server.args).toEqual(expect.arrayContaining(['--tls-cert=/etc/fleetprof/tls/tls.crt', '--tls-key=/etc/fleetprof/tls/tls.key']));
    expect(server.readinessProbe.httpGet.scheme).toBe('HTTPS');
    const agent = byKind(patched, 'DaemonSet').spec.template.spec.containers[0];
    expect(agent.args[1]).toBe('--server=https://fleetprof.fleetprof.svc:4100');
    expect(agent.env.find((env: Obj) => env.name === 'NODE_EXTRA_CA_CERTS').value).toBe('/etc/fleetprof/tls/ca.crt');
  });

  it('the unwind-dwarf component\'s patches apply, validate, use flags the agent accepts and mount the cache it names', async () => {
    const patched = await withComponent(objects, 'unwind-dwarf');
    const pod = byKind(patched, 'DaemonSet').spec.template.spec;
    const agent = pod.containers[0];
    expect(agent.args).toContain('--unwind=dwarf');
    const known = cliOptions('agent');
    for (const arg of agent.args.slice(1)) expect(known, arg).toContain(/^--([a-z-]+)/.exec(arg)![1]);
    const cacheDir = (agent.args as string[]).find((a) => a.startsWith('--unwind-cache-dir='))!.split('=')[1];
    const mount = agent.volumeMounts.find((m: Obj) => m.mountPath === cacheDir);
    expect(mount, 'the cache directory is a mounted volume (the root file system is read-only)').toBeDefined();
    expect(agent.securityContext.readOnlyRootFilesystem).toBe(true);
    expect(mount.readOnly ?? false).toBe(false);
    const volume = pod.volumes.find((v: Obj) => v.name === mount.name);
    expect(volume.hostPath).toEqual({ path: cacheDir, type: 'DirectoryOrCreate' });
  });

  it('the kustomization names only files that exist and the image it builds', () => {
    const kustomization = k8s.loadYaml<Kustomization>(readFileSync(join(DIR, 'kustomization.yaml'), 'utf8'));
    for (const file of kustomization.resources) expect(existsSync(join(DIR, file))).toBe(true);
    expect(kustomization.namespace).toBe('fleetprof');
    expect(kustomization.images).toEqual([{ name: 'fleetprof', newName: 'localhost/fleetprof', newTag: 'dev' }]);
    for (const object of objects.filter((o) => o.spec?.template)) expect(object.spec.template.spec.containers[0].image).toBe('fleetprof');
  });
});
