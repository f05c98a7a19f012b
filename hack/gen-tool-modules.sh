#!/usr/bin/env bash
# Regenerates the wrapper Go modules under hack/tools/ from the pins in hack/versions.env.
#
# Why wrappers: k8s.io/kubernetes and etcd's server module replace their sibling modules with
# relative paths, so `go install pkg@version` refuses them. A wrapper module that requires the
# module and maps each staging module to its published version builds them unchanged.
# Run this only when a pin changes; commit the resulting go.mod/go.sum.
set -euo pipefail
cd "$(dirname "$0")"
source ./versions.env
export GOFLAGS=-mod=mod GOTOOLCHAIN=local

new_module() { # dir module-path
  rm -rf "tools/$1"; mkdir -p "tools/$1"
  printf 'module %s\n\ngo 1.26.0\n' "$2" > "tools/$1/go.mod"
}

# Kubernetes: copy the go/godebug lines and turn every ./staging replace into a version pin.
kmod=$(go mod download -json "k8s.io/kubernetes@${KUBERNETES_VERSION}" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
minor_patch=${KUBERNETES_VERSION#v1.}
new_module kubernetes spillway.dev/hack/tools/kubernetes
{
  printf 'module spillway.dev/hack/tools/kubernetes\n\n'
  grep -E '^(go|godebug) ' "$kmod"
  printf '\nrequire k8s.io/kubernetes %s\n\nreplace (\n' "$KUBERNETES_VERSION"
  sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/src/k8s.io/.*#\t\1 => \1 v0.'"$minor_patch"'#p' "$kmod"
  printf ')\n'
} > tools/kubernetes/go.mod
(cd tools/kubernetes && for c in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
  go get -tool "k8s.io/kubernetes/cmd/$c@${KUBERNETES_VERSION}"; done)

new_module etcd spillway.dev/hack/tools/etcd
(cd tools/etcd && go get -tool "go.etcd.io/etcd/server/v3@${ETCD_VERSION}" && go get -tool "go.etcd.io/etcd/etcdctl/v3@${ETCD_VERSION}")

new_module helm spillway.dev/hack/tools/helm
(cd tools/helm && go get -tool "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}")

new_module kwok spillway.dev/hack/tools/kwok
(cd tools/kwok && go get -tool "sigs.k8s.io/kwok/cmd/kwok@${KWOK_VERSION}")

new_module coredns spillway.dev/hack/tools/coredns
(cd tools/coredns && go get -tool "github.com/coredns/coredns@${COREDNS_VERSION}")
