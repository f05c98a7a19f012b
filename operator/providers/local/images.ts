/**
 * Image pulls as a kubelet makes them: the pull policy (`Always`, `IfNotPresent`, `Never`; `:latest` or no tag
 * defaults to `Always`), credentials from the pod's imagePullSecrets (docker config JSON, tried in order for the
 * image's registry; anonymously only when none has any for it), and the waiting reasons a user sees: `ErrImagePull` when a pull fails,
 * `ImagePullBackOff` while waiting to try again, `ErrImageNeverPull` when the policy forbids the pull.
 */
import type { V1Container } from '@kubernetes/client-node';
import type { CriClient } from './cri/client.ts';
import type { AuthConfig, PodSandboxConfig } from './cri/types.ts';

/** Why an image is not there to run: the waiting reason and the kubelet's message. */
export class ImageError extends Error {
  readonly reason: 'ErrImagePull' | 'ErrImageNeverPull' | 'InvalidImageName';
  constructor(reason: ImageError['reason'], message: string) {
    super(message);
    this.reason = reason;
  }
}

/** The pull policy of a container, defaulted as the apiserver does when absent. */
export function pullPolicy(
  c: Pick<V1Container, 'image' | 'imagePullPolicy'>,
): 'Always' | 'IfNotPresent' | 'Never' {
  const p = c.imagePullPolicy;
  if (p === 'Always' || p === 'IfNotPresent' || p === 'Never') return p;
  const image = c.image ?? '';
  if (image.includes('@')) return 'IfNotPresent';
  const last = image.split('/').pop() ?? '';
  const tag = last.includes(':') ? last.split(':').pop() : undefined;
  return !tag || tag === 'latest' ? 'Always' : 'IfNotPresent';
}

/** The registry host of an image reference (`docker.io` when it names none). */
export function registryOf(image: string): string {
  const first = image.split('/')[0] ?? '';
  const hasRegistry =
    image.includes('/') && (first.includes('.') || first.includes(':') || first === 'localhost');
  return hasRegistry ? first : 'docker.io';
}

/** A docker config's `auths` key normalised to a host (`https://localhost:5000/v2/` → `localhost:5000`). */
function hostOf(key: string): string {
  const host = key.replace(/^[a-z]+:\/\//, '').split('/')[0] ?? '';
  return host === 'index.docker.io' || host === 'registry-1.docker.io' ? 'docker.io' : host;
}

/**
 * The credentials for `image` in pull secrets (the `.dockerconfigjson` or `.dockercfg` bytes of each), in the
 * order the pod lists them; unreadable secrets are skipped.
 */
export function credentialsFor(image: string, secrets: Buffer[]): AuthConfig[] {
  const registry = registryOf(image);
  const out: AuthConfig[] = [];
  for (const raw of secrets) {
    let parsed: Record<string, unknown>;
    try {
      parsed = JSON.parse(raw.toString('utf8')) as Record<string, unknown>;
    } catch {
      continue;
    }
    const auths = (parsed['auths'] ?? parsed) as Record<string, Record<string, string>>;
    for (const [key, entry] of Object.entries(auths)) {
      if (hostOf(key) !== registry || typeof entry !== 'object' || !entry) continue;
      // No server_address: containerd parses it as a URL and silently drops credentials whose host does not match
      // the registry's, which a bare `localhost:5000` (or `docker.io`) never does. The entry was matched above.
      const auth: AuthConfig = {};
      if (entry['auth']) auth.auth = entry['auth'];
      if (entry['username']) auth.username = entry['username'];
      if (entry['password']) auth.password = entry['password'];
      if (entry['identitytoken']) auth.identity_token = entry['identitytoken'];
      if (entry['registrytoken']) auth.registry_token = entry['registrytoken'];
      out.push(auth);
    }
  }
  return out;
}

/**
 * Makes sure `container`'s image is there per its pull policy; returns the image reference to create with.
 * @throws ImageError the image is not there and cannot be (ErrImagePull with the runtime's message, ErrImageNeverPull)
 */
export async function ensureImage(
  cri: CriClient,
  container: Pick<V1Container, 'image' | 'imagePullPolicy'>,
  pullSecrets: Buffer[],
  sandbox: PodSandboxConfig,
): Promise<void> {
  const image = container.image ?? '';
  if (!image) throw new ImageError('InvalidImageName', 'the container names no image');
  const policy = pullPolicy(container);
  if (policy !== 'Always') {
    const present = await cri.imageStatus(image);
    if (present) return;
    if (policy === 'Never') {
      throw new ImageError(
        'ErrImageNeverPull',
        `Container image "${image}" is not present with pull policy of Never`,
      );
    }
  }
  // As the kubelet: each matching credential in turn, anonymously only when no secret has one for this registry
  // (so that a wrong password is reported as the registry's refusal, not as missing credentials).
  const credentials = credentialsFor(image, pullSecrets);
  const tries: (AuthConfig | undefined)[] = credentials.length > 0 ? credentials : [undefined];
  let last: Error | undefined;
  for (const auth of tries) {
    try {
      await cri.pullImage(image, auth, sandbox);
      return;
    } catch (err) {
      last = err as Error;
    }
  }
  // The runtime's own words (they name the image), as the kubelet shows them; the Event adds `Failed to pull image`.
  throw new ImageError('ErrImagePull', (last?.message ?? 'the pull failed').replace(/^PullImage: /, ''));
}
