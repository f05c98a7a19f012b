#!/usr/bin/env bash
# Creates a kind cluster and installs spillway's Helm chart into it, with one fake virtual node, for users who
# have Docker. NOT exercised by this repository's CI: the CI machines have no Docker engine (the tests run against
# a local control plane built from source instead, see docs/architecture.md#local-control-plane). docs/kind.md explains each step.
#
#   hack/kind-install.sh                 # cluster "spillway", image ghcr.io/spillway-dev/spillway:<appVersion>
#   CLUSTER=demo IMAGE=my.registry/spillway:dev hack/kind-install.sh
#   DELETE=1 hack/kind-install.sh        # delete the cluster again
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
CLUSTER="${CLUSTER:-spillway}"
NAMESPACE="${NAMESPACE:-spillway-system}"
app_version="$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$here/charts/spillway/Chart.yaml")"
IMAGE="${IMAGE:-ghcr.io/spillway-dev/spillway:${app_version}}"

need() { command -v "$1" >/dev/null || { echo "kind-install: $1 is required ($2)" >&2; exit 1; }; }
need docker "https://docs.docker.com/get-docker/"
need kind "https://kind.sigs.k8s.io/docs/user/quick-start/#installation"
need kubectl "https://kubernetes.io/docs/tasks/tools/"
need helm "https://helm.sh/docs/intro/install/"

if [[ "${DELETE:-}" == 1 ]]; then
  kind delete cluster --name "$CLUSTER"
  exit 0
fi

# 1. A cluster with one control-plane node and two workers (the controller's two replicas spread over them).
if ! kind get clusters | grep -qx "$CLUSTER"; then
  kind create cluster --name "$CLUSTER" --wait 120s --config - <<'KIND'
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
nodes:
  - role: control-plane
  - role: worker
  - role: worker
KIND
fi
kubectl config use-context "kind-$CLUSTER" >/dev/null

# 2. The operator image: a local build is loaded into the nodes; otherwise the nodes pull it.
if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  kind load docker-image --name "$CLUSTER" "$IMAGE"
else
  echo "kind-install: $IMAGE is not a local image; the nodes will pull it (docs/install.md: building the image)" >&2
fi

# 3. The chart, in a namespace that enforces Pod Security "restricted", with one fake virtual node.
kubectl create namespace "$NAMESPACE" --dry-run=client -o yaml | kubectl apply -f -
kubectl label namespace "$NAMESPACE" --overwrite \
  pod-security.kubernetes.io/enforce=restricted pod-security.kubernetes.io/enforce-version=latest
helm upgrade --install spillway "$here/charts/spillway" \
  --namespace "$NAMESPACE" \
  --set image.repository="${IMAGE%:*}" --set image.tag="${IMAGE##*:}" \
  --set 'virtualNodes[0].name=fake' --set 'virtualNodes[0].provider=fake' \
  --wait --timeout 5m
helm test spillway --namespace "$NAMESPACE"

kubectl get nodes -L spillway.dev/virtual-node
echo "kind-install: done. Try: kubectl apply -n default -f $here/examples/web/ && kubectl get pods -o wide -w"
