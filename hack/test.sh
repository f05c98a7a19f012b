#!/usr/bin/env bash
# The test run of `make test`: unit and integration tests, then the e2e tests, against one local control plane.
# Each run's vitest global setup (test/support/global-setup.ts) seeds the cluster's registry with the catalog
# images (hack/images/catalog.ts), building them as `make images` does: no separate `make images` step.
# Integration and e2e tests must not run side by side (webhook registrations and sandbox networking are
# cluster-wide), so they are two vitest runs; the cluster started for them is stopped at the end, and one
# that `make cluster-up` left running is left running.
set -uo pipefail
cd "$(dirname "$0")/.."
was_running=0
node hack/cluster.ts status >/dev/null 2>&1 && was_running=1
KEEP_CLUSTER=1 vitest run --project unit --project integration
rc=$?
if [ "$rc" = 0 ]; then
  KEEP_CLUSTER=1 vitest run --project e2e
  rc=$?
fi
[ "$was_running" = 1 ] || node hack/cluster.ts down >/dev/null
exit "$rc"
