/**
 * Helpers for the chart tests: helm against the local control plane, the rendered chart as objects, a
 * kubeconfig per ServiceAccount (a token from the TokenRequest API), and the operator run as a child process
 * with exactly the command line the chart gives its containers.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CoreV1Api, type KubeConfig, type V1Container, type V1Deployment } from '@kubernetes/client-node';
import { parseAllDocuments } from 'yaml';
import { registryUrl } from '../../hack/images/push.ts';
import { defaultBinDir, repoRoot } from './cluster.ts';

const run = promisify(execFile);

/** The chart under test. */
export const chartDir = join(repoRoot, 'charts/spillway');

/** The Kubernetes version the chart is rendered for (the local control plane's). */
export const kubeVersion = '1.36.3';

/** A rendered or stored Kubernetes object, as plain JSON. */
export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  [key: string]: unknown;
}

/** Runs the built helm against `kubeconfig`; rejects with helm's stderr in the message. */
export async function helm(kubeconfig: string, ...args: string[]): Promise<string> {
  try {
    const { stdout, stderr } = await run(join(defaultBinDir, 'helm'), [...args, '--kubeconfig', kubeconfig], {
      env: { ...process.env, HELM_CACHE_HOME: join(tmpdir(), 'spillway-helm-cache') },
      maxBuffer: 32 << 20,
    });
    return stdout + stderr;
  } catch (err) {
    const e = err as { stderr?: string; stdout?: string; message: string };
    throw new Error(`helm ${args.join(' ')}: ${e.stderr?.trim() || e.stdout?.trim() || e.message}`, {
      cause: err,
    });
  }
}

/** `helm template` of the chart; `args` are further helm flags (`-f`, `--set`, ...). */
export async function renderChart(
  kubeconfig: string,
  release: string,
  namespace: string,
  ...args: string[]
): Promise<KubeObject[]> {
  const out = await helm(
    kubeconfig,
    'template',
    release,
    chartDir,
    '--namespace',
    namespace,
    '--kube-version',
    kubeVersion,
    ...args,
  );
  return parseManifests(out);
}

/** Every object of a multi-document YAML stream (empty documents dropped). */
export function parseManifests(text: string): KubeObject[] {
  return parseAllDocuments(text)
    .map((d) => d.toJS() as KubeObject | null)
    .filter((o): o is KubeObject => !!o && typeof o === 'object' && 'kind' in o);
}

/** The one object of `kind` named `name` (throws naming what is there when it is missing). */
export function findObject<T = KubeObject>(objects: KubeObject[], kind: string, name: string): T {
  const found = objects.find((o) => o.kind === kind && o.metadata.name === name);
  if (!found) {
    const have = objects.map((o) => `${o.kind}/${o.metadata.name}`).join(', ');
    throw new Error(`the chart rendered no ${kind}/${name} (it rendered ${have})`);
  }
  return found as T;
}

/** The first container of a rendered Deployment. */
export function containerOf(objects: KubeObject[], deployment: string): V1Container {
  const d = findObject<V1Deployment>(objects, 'Deployment', deployment);
  return d.spec!.template.spec!.containers[0]!;
}

/**
 * A kubeconfig file for `namespace/serviceAccount`: the cluster of `kc` and a token from the TokenRequest API,
 * so a process using it has exactly the ServiceAccount's RBAC.
 */
export async function serviceAccountKubeconfig(
  kc: KubeConfig,
  namespace: string,
  serviceAccount: string,
  dir: string,
): Promise<string> {
  const core = kc.makeApiClient(CoreV1Api);
  const tr = await core.createNamespacedServiceAccountToken({
    name: serviceAccount,
    namespace,
    body: { spec: { audiences: [], expirationSeconds: 3600 } },
  });
  const cluster = kc.getCurrentCluster()!;
  const ca = cluster.caData ?? '';
  const path = join(dir, `${serviceAccount}.kubeconfig`);
  writeFileSync(
    path,
    [
      'apiVersion: v1',
      'kind: Config',
      'clusters:',
      `- name: local`,
      `  cluster: {server: "${cluster.server}", certificate-authority-data: ${ca}}`,
      'users:',
      `- name: ${serviceAccount}`,
      `  user: {token: "${tr.status!.token}"}`,
      'contexts:',
      `- name: ${serviceAccount}`,
      `  context: {cluster: local, user: ${serviceAccount}, namespace: ${namespace}}`,
      `current-context: ${serviceAccount}`,
      '',
    ].join('\n'),
    { mode: 0o600 },
  );
  return path;
}

/** A temporary folder for kubeconfigs and files a test materialises from ConfigMaps. */
export function scratchDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `${prefix}-`));
}

/**
 * The container's args with `--flag=value` pairs replaced where `overrides` names the flag, and `$(VAR)`
 * references expanded from `env` (as the kubelet does). Throws if an override names a flag the chart does not
 * pass: the test would otherwise run something other than the chart's command line.
 */
export function chartArgs(
  container: V1Container,
  overrides: Record<string, string>,
  env: Record<string, string>,
): string[] {
  const args = container.args ?? [];
  const seen = new Set<string>();
  const out = args.map((arg) => {
    const m = /^--([^=]+)=(.*)$/.exec(arg);
    const value = (v: string) =>
      v.replace(/\$\(([A-Z_]+)\)/g, (_, name: string) => env[name] ?? `$(${name})`);
    if (!m) return value(arg);
    const [, flag, v] = m;
    if (flag! in overrides) {
      seen.add(flag!);
      return `--${flag}=${overrides[flag!]}`;
    }
    return `--${flag}=${value(v!)}`;
  });
  const missing = Object.keys(overrides).filter((f) => !seen.has(f));
  if (missing.length) throw new Error(`the chart passes no --${missing.join(', --')} to ${container.name}`);
  return out;
}

/** A spillway process started from the repository's CLI. */
export interface OperatorProcess {
  child: ChildProcess;
  output: () => string;
  /** SIGTERM, then wait for the exit (SIGKILL after 20 s). */
  stop: () => Promise<void>;
}

/** Starts `node operator/cli.ts <args>` with only `kubeconfig`'s identity (no KUBECONFIG inherited). */
export function startOperator(args: string[], kubeconfig: string): OperatorProcess {
  let output = '';
  const env: NodeJS.ProcessEnv = { ...process.env, LOG_LEVEL: 'info' };
  delete env.KUBECONFIG;
  const child = spawn(
    process.execPath,
    [join(repoRoot, 'operator/cli.ts'), ...args, `--kubeconfig=${kubeconfig}`],
    {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const append = (d: Buffer) => {
    output += d.toString();
    if (output.length > 2_000_000) output = output.slice(-1_000_000);
  };
  child.stdout?.on('data', append);
  child.stderr?.on('data', append);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    child,
    output: () => output,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** The manifest media types a registry may store an image under (OCI and Docker, single and multi-platform). */
const MANIFEST_TYPES = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.docker.distribution.manifest.v2+json',
].join(', ');

/** `repository:tag` of the loopback `registry` (`localhost:PORT`), or undefined when the registry lacks it. */
export async function readManifest(
  registry: string,
  repository: string,
  tag: string,
): Promise<{ body: Buffer; mediaType: string } | undefined> {
  const res = await fetch(`${registryUrl(registry)}/v2/${repository}/manifests/${tag}`, {
    headers: { accept: MANIFEST_TYPES },
  });
  if (res.status === 404) return undefined;
  if (!res.ok) throw new Error(`registry ${registry}: GET ${repository}:${tag} answered ${res.status}`);
  return {
    body: Buffer.from(await res.arrayBuffer()),
    mediaType: res.headers.get('content-type') ?? 'application/vnd.oci.image.manifest.v1+json',
  };
}

/**
 * Tags `repository:from` also as `repository:to` in the loopback `registry` (the same manifest, so the same
 * image under a new name): what a release pipeline's new tag looks like to `helm upgrade --set image.tag`.
 */
export async function tagImage(
  registry: string,
  repository: string,
  from: string,
  to: string,
): Promise<void> {
  const manifest = await readManifest(registry, repository, from);
  if (!manifest) throw new Error(`registry ${registry} has no ${repository}:${from} to tag as ${to}`);
  const res = await fetch(`${registryUrl(registry)}/v2/${repository}/manifests/${to}`, {
    method: 'PUT',
    headers: { 'content-type': manifest.mediaType },
    body: manifest.body,
  });
  if (!res.ok) throw new Error(`registry ${registry}: PUT ${repository}:${to} answered ${res.status}`);
}

/** An address of this host on a link of its own, and how to remove it. */
export interface HostAddress {
  address: string;
  remove: () => Promise<void>;
}

/**
 * Adds `address` on an empty bridge `spillway-chart0` (named like every link of this project, so the network
 * guard lets its traffic through; a bridge because this kernel may lack the dummy link type): a non-loopback
 * address of this host, for a process the apiserver must reach through a Service's Endpoints, which refuse
 * loopback addresses. Its traffic never leaves the host (local delivery). Needs root; replaces a link left by an
 * earlier run.
 */
export async function addHostAddress(address = '10.249.255.1'): Promise<HostAddress> {
  const link = 'spillway-chart0';
  const ip = (...args: string[]) => run('ip', args);
  await ip('link', 'del', link).catch(() => undefined);
  try {
    await ip('link', 'add', link, 'type', 'bridge');
    await ip('addr', 'add', `${address}/32`, 'dev', link);
    await ip('link', 'set', link, 'up');
  } catch (err) {
    throw new Error(
      `adding ${address} on a bridge ${link} (needs root): ${(err as { stderr?: string }).stderr ?? String(err)}`,
      { cause: err },
    );
  }
  return { address, remove: () => ip('link', 'del', link).then(() => undefined) };
}
