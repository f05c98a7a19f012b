/**
 * The direction of imports (eslint.config.js, docs/architecture.md) holds: ESLint refuses an import that goes
 * against it, including the ones this rule was written to stop, and lets the allowed ones through.
 */
import { fileURLToPath } from 'node:url';
import { ESLint } from 'eslint';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const eslint = new ESLint({ cwd: ROOT });

/** The no-restricted-imports messages ESLint gives `code` as if it were the file at `path`. */
async function violations(path: string, code: string): Promise<string[]> {
  const [result] = await eslint.lintText(`${code}\nexport const used = x;\n`, {
    filePath: `${ROOT}${path}`,
  });
  return (result?.messages ?? []).filter((m) => m.ruleId === 'no-restricted-imports').map((m) => m.message);
}

describe('the direction of imports', () => {
  it.each([
    // The imports that made the contract package necessary.
    [
      'operator/providers/eci/mapping.ts',
      "import { CAPACITY_LABEL as x } from '../../../webhooks/contract.ts';",
    ],
    ['operator/providers/eci/specs.ts', "import { parseQuantity as x } from '../../virtualnode/resolve.ts';"],
    [
      'operator/virtualnode/node.ts',
      "import { VIRTUAL_NODE_LABELS as x } from '../../webhooks/contract.ts';",
    ],
    [
      'operator/elasticworkload/refusals.ts',
      "import { virtualPlacementReason as x } from '../../webhooks/validate.ts';",
    ],
    // Nothing imports upward, and parts do not import each other.
    ['api/labels.ts', "import { componentLogger as x } from '../operator/shared/log.ts';"],
    ['api/labels.ts', "import { placePod as x } from '../webhooks/placement.ts';"],
    ['operator/shared/client.ts', "import type { SandboxProvider as x } from '../providers/types.ts';"],
    ['operator/providers/eci/provider.ts', "import { planSandbox as x } from '../local/plan.ts';"],
    ['operator/providers/local/provider.ts', "import { providerRules as x } from '../rules.ts';"],
    [
      'operator/providers/fake/fake-provider.ts',
      "export { startVirtualNode as x } from '../../virtualnode/run.ts';",
    ],
    ['operator/virtualnode/kubelet/api.ts', "import { runWebhooks as x } from '../../../webhooks/run.ts';"],
    [
      'operator/virtualnode/pods.ts',
      "import type { ElasticWorkloadController as x } from '../elasticworkload/controller.ts';",
    ],
    [
      'operator/virtualnode/pods.ts',
      "import { FakeProvider as x } from '../providers/fake/fake-provider.ts';",
    ],
    ['operator/elasticworkload/controller.ts', "import { main as x } from '../cli.ts';"],
    [
      'operator/elasticworkload/controller.ts',
      "import { PodController as x } from '../virtualnode/pods.ts';",
    ],
    [
      'operator/elasticworkload/controller.ts',
      "import type { SandboxProvider as x } from '../providers/types.ts';",
    ],
    ['operator/nodeidentity/approver.ts', "import { VirtualNode as x } from '../virtualnode/node.ts';"],
    ['webhooks/run.ts', "import { startVirtualNode as x } from '../operator/virtualnode/run.ts';"],
    ['webhooks/run.ts', "import { EciProvider as x } from '../operator/providers/eci/provider.ts';"],
  ])('%s may not: %s', async (path, code) => {
    const found = await violations(path, code);
    expect(found).toHaveLength(1);
    expect(found[0]).toMatch(
      / imports (only its own files and|nothing of the project).*docs\/architecture\.md/,
    );
  });

  it.each([
    ['api/placement.ts', "import { virtualNodeFit as x } from './node-match.ts';"],
    ['api/elasticworkload.ts', "import { z as x } from 'zod';"],
    ['operator/shared/events.ts', "import { LABEL_UNIT as x } from '../../api/labels.ts';"],
    ['operator/providers/eci/mapping.ts', "import { CAPACITY_LABEL as x } from '../../../api/labels.ts';"],
    ['operator/providers/eci/specs.ts', "import { parseQuantity as x } from '../../../api/quantity.ts';"],
    ['operator/providers/eci/provider.ts', "import { componentLogger as x } from '../../shared/log.ts';"],
    ['operator/providers/eci/provider.ts', "import type { SandboxProvider as x } from '../types.ts';"],
    ['operator/providers/eci/provider.ts', "import { chooseSpec as x } from './specs.ts';"],
    ['operator/providers/rules.ts', "import { eciUnsupported as x } from './eci/rules.ts';"],
    ['operator/virtualnode/node.ts', "import { VIRTUAL_NODE_LABELS as x } from '../../api/labels.ts';"],
    [
      'operator/virtualnode/kubelet/api.ts',
      "import type { SandboxProvider as x } from '../../providers/types.ts';",
    ],
    ['operator/virtualnode/kubelet/api.ts', "import { PodController as x } from '../pods.ts';"],
    [
      'operator/virtualnode/run.ts',
      "import { ClientCertificate as x } from '../nodeidentity/client-certificate.ts';",
    ],
    ['operator/elasticworkload/refusals.ts', "import { providerRules as x } from '../providers/rules.ts';"],
    ['webhooks/validate.ts', "import { providerRefusal as x } from '../operator/providers/refusal.ts';"],
    ['webhooks/run.ts', "import { componentLogger as x } from '../operator/shared/log.ts';"],
    // Tests beside the code wire in the fake provider and the test support.
    [
      'operator/virtualnode/pods.test.ts',
      "import { FakeProvider as x } from '../providers/fake/fake-provider.ts';",
    ],
    [
      'operator/providers/eci/provider.test.ts',
      "import { startFakeEci as x } from '../../../test/support/fake-eci/server.ts';",
    ],
    // The composition root imports everything.
    ['operator/cli.ts', "import { runWebhooks as x } from '../webhooks/run.ts';"],
    ['operator/cli.ts', "import { startVirtualNode as x } from './virtualnode/run.ts';"],
    [
      'test/integration/virtualnode.test.ts',
      "import { PodController as x } from '../../operator/virtualnode/pods.ts';",
    ],
  ])('%s may: %s', async (path, code) => {
    expect(await violations(path, code)).toEqual([]);
  });
});
