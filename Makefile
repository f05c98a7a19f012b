# spillway — the command contract (docs/architecture.md#command-contract). Every target installs what it needs first:
# Node >= 22 (from the npm registry when the system's is older), npm deps, and the Go-built binaries.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := test

# Every recipe line runs with a Node >= 22 first on PATH and the project's binaries after it.
WITH_NODE = export PATH="$$(bash hack/ensure-node.sh):$(CURDIR)/bin:$(CURDIR)/node_modules/.bin:$$PATH";
PROVIDER ?= fake

.PHONY: test lint typecheck unit integration e2e system tools deps cluster-up cluster-down run demo bench soak crds image images clean

deps: node_modules/.installed
node_modules/.installed: package.json package-lock.json .node-version
	@$(WITH_NODE) npm ci --no-audit --no-fund --loglevel=error
	@touch $@

## the system packages every target needs (nftables, iproute2, util-linux, Go, python3): installed when root,
## otherwise the exact apt-get line is printed (hack/system-packages.sh holds the one list)
system:
	@bash hack/system-packages.sh

tools: system deps
	@bash hack/build-tools.sh

lint: deps
	@$(WITH_NODE) eslint . && prettier --check --log-level=warn .

typecheck: deps
	@$(WITH_NODE) tsc --noEmit

unit: deps
	@$(WITH_NODE) vitest run --project unit

integration: tools
	@$(WITH_NODE) vitest run --project integration

e2e: tools
	@$(WITH_NODE) vitest run --project e2e

## everything CI checks; ends with vitest's summary (hack/test.sh: unit + integration, then e2e, on one cluster)
test: system tools lint typecheck
	@$(WITH_NODE) bash hack/test.sh

## the main job on one machine (needs root): local control plane, operator with the local provider, examples/web
## scaled 2 → 10 → 3 with a table of where every replica runs; KEEP=1 leaves it running
demo: system tools
	@$(WITH_NODE) node hack/demo.ts

## the benchmarks (docs/architecture.md#performance-targets): bench/results/<name>.json + .svg and a summary table; BENCH_ARGS=--quick for small sizes
bench: tools
	@bash hack/build-tools.sh vegeta vkref
	@$(WITH_NODE) node bench/run.ts $(BENCH_ARGS)

## the kill-soak: kill -9 of `spillway run` at random moments during burst, scale-in and rollout, then orphans,
## duplicates, stuck pods, extra creates, broken sandboxes, repeated Events and leftovers after delete are counted,
## for eci (fake endpoint) and local (needs root); bench/results/soak.json and a table.
## SOAK_PROVIDERS=eci,local SOAK_KILLS=10 SOAK_PODS=20 SOAK_SEED=<n> (printed, replays the kill moments)
SOAK_PROVIDERS ?= eci,local
soak: system tools
	@$(WITH_NODE) node bench/soak.ts --providers $(SOAK_PROVIDERS)

## the local cluster (control plane, loopback registry, containerd as root), its registry seeded with `make images`,
## and as root two real kubelet nodes with CoreDNS and metrics-server (docs/architecture.md#real-nodes); NODES=0: none
NODES ?= 2
cluster-up: tools images
	@$(WITH_NODE) node hack/cluster.ts up
	@$(WITH_NODE) node hack/build-images.ts --push cluster
	@if [ "$$(id -u)" = 0 ] && [ "$(NODES)" != 0 ]; then $(WITH_NODE) node hack/cluster.ts nodes; fi

cluster-down: deps
	@$(WITH_NODE) node hack/cluster.ts down

## the operator in the foreground against $$KUBECONFIG (default: the local cluster's); PROVIDER=fake|local|eci
run: deps
	@$(WITH_NODE) export KUBECONFIG="$${KUBECONFIG:-$(CURDIR)/.cluster/kubeconfig}"; \
	  exec node operator/cli.ts run --provider $(PROVIDER) $(RUN_FLAGS)

crds: deps
	@$(WITH_NODE) node hack/gen-crds.ts

## the operator's image without a container engine: dist/image/spillway-<appVersion>.oci.tar (OCI layout + Docker
## manifest.json), from the npm registry and Debian packages; cached, so unchanged inputs rebuild in seconds
image: deps
	@bash hack/build-tools.sh cri-api
	@$(WITH_NODE) node hack/build-image.ts

## the images the local cluster runs (hack/images/catalog.ts: pause, busybox, nginx, agnhost, coredns) and the
## operator's, without a container engine, into dist/images/*.oci.tar; `node hack/build-images.ts --push HOST:PORT`
## pushes them (cached: unchanged inputs rebuild in seconds with the same digests)
images: tools
	@$(WITH_NODE) node hack/build-images.ts

clean: cluster-down
	rm -rf .cluster
