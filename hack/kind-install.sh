#!/usr/bin/env bash
# Creates a kind cluster and installs spillway's Helm chart into it with the local cluster's values
# (charts/spillway/ci/local-values.yaml): the same image names as `make cluster-up` (localhost:5000/spillway/<name>,
# hack/images/catalog.ts), an ECI virtual node against the chart's fake ECI Service, `helm test` on agnhost.
# For users who have Docker. NOT exercised by this repository's CI: the CI machines have no Docker engine (the
# tests run the same chart and values on the local cluster's real nodes instead, test/e2e/chart-in-cluster.test.ts;
# docs/architecture.md#local-control-plane). docs/kind.md explains each step.
#
#   hack/kind-install.sh                 # cluster "spillway", registry kind-registry on 127.0.0.1:5000
#   CLUSTER=demo hack/kind-install.sh
#   DELETE=1 hack/kind-install.sh        # delete the cluster (and the registry container) again
#
# The images: `make images && node hack/build-images.ts --push localhost:5000` pushes them to this script's registry
# container (started by the first run, which stops and says so while they are missing). The nodes pull
# localhost:5000/... from it through a containerd mirror.
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
CLUSTER="${CLUSTER:-spillway}"
NAMESPACE="${NAMESPACE:-spillway-system}"
REGISTRY_NAME="${REGISTRY_NAME:-kind-registry}"
VALUES="$here/charts/spillway/ci/local-values.yaml"

need() { command -v "$1" >/dev/null || { echo "kind-install: $1 is required ($2)" >&2; exit 1; }; }
need docker "https://docs.docker.com/get-docker/"
need kind "https://kind.sigs.k8s.io/docs/user/quick-start/#installation"
need kubectl "https://kubernetes.io/docs/tasks/tools/"
need helm "https://helm.sh/docs/intro/install/"
need curl "https://curl.se/"

if [[ "${DELETE:-}" == 1 ]]; then
  kind delete cluster --name "$CLUSTER"
  docker rm -f "$REGISTRY_NAME" >/dev/null 2>&1 || true
  exit 0
fi

# 1. The registry the images are pushed to, on 127.0.0.1:5000 as in the local cluster (kind's local registry
#    recipe: https://kind.sigs.k8s.io/docs/user/local-registry/).
if [[ "$(docker inspect -f '{{.State.Running}}' "$REGISTRY_NAME" 2>/dev/null || true)" != true ]]; then
  docker run -d --restart=always -p 127.0.0.1:5000:5000 --network bridge --name "$REGISTRY_NAME" registry:2 >/dev/null
fi

for _ in $(seq 30); do curl -fsS -o /dev/null http://127.0.0.1:5000/v2/ && break; sleep 1; done
app_version="$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$here/charts/spillway/Chart.yaml")"
for image in "spillway/spillway:$app_version" "spillway/fake-eci:$app_version"; do
  if ! curl -fsS -o /dev/null -H 'Accept: application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json' \
    "http://127.0.0.1:5000/v2/${image%%:*}/manifests/${image##*:}"; then
    echo "kind-install: localhost:5000 has no $image: run \`make images && node hack/build-images.ts --push localhost:5000\`, then this again" >&2
    exit 1
  fi
done

# 2. A cluster with one control-plane node and two workers (the controller's two replicas spread over them), whose
#    containerd reads registry mirrors from /etc/containerd/certs.d.
if ! kind get clusters | grep -qx "$CLUSTER"; then
  kind create cluster --name "$CLUSTER" --wait 120s --config - <<'KIND'
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
containerdConfigPatches:
  - |-
    [plugins."io.containerd.grpc.v1.cri".registry]
      config_path = "/etc/containerd/certs.d"
nodes:
  - role: control-plane
  - role: worker
  - role: worker
KIND
fi
kubectl config use-context "kind-$CLUSTER" >/dev/null

# 3. localhost:5000 on every node means the registry container (on kind's network).
for node in $(kind get nodes --name "$CLUSTER"); do
  docker exec "$node" mkdir -p /etc/containerd/certs.d/localhost:5000
  printf '[host."http://%s:5000"]\n' "$REGISTRY_NAME" | docker exec -i "$node" cp /dev/stdin /etc/containerd/certs.d/localhost:5000/hosts.toml
done
if [[ "$(docker inspect -f '{{json .NetworkSettings.Networks.kind}}' "$REGISTRY_NAME")" == null ]]; then
  docker network connect kind "$REGISTRY_NAME"
fi

# 4. The chart, in a namespace that enforces Pod Security "restricted", with the local cluster's values.
kubectl create namespace "$NAMESPACE" --dry-run=client -o yaml | kubectl apply -f -
kubectl label namespace "$NAMESPACE" --overwrite \
  pod-security.kubernetes.io/enforce=restricted pod-security.kubernetes.io/enforce-version=latest
helm upgrade --install spillway "$here/charts/spillway" \
  --namespace "$NAMESPACE" -f "$VALUES" \
  --wait --timeout 5m
helm test spillway --namespace "$NAMESPACE"

kubectl get nodes -L spillway.dev/virtual-node
echo "kind-install: done. Try: kubectl apply -n default -f $here/examples/web/ && kubectl get pods -o wide -w"
