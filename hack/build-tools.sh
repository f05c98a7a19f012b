#!/usr/bin/env bash
# Builds the pinned Go binaries (etcd, kube-*, kubectl, helm, kwok, coredns) into $SPILLWAY_BIN
# (default: bin/, gitignored) from the wrapper modules in hack/tools/. Each tool is rebuilt only
# when its wrapper module or this script changes (a content hash is kept beside the binaries).
#
#   hack/build-tools.sh            build what is missing or stale
#   hack/build-tools.sh kwok helm  only these tools
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/hack/versions.env"
bin=${SPILLWAY_BIN:-$root/bin}
# The machine image keeps Go in /usr/local/go; a shell without it on PATH still finds it.
[[ -x /usr/local/go/bin/go ]] && export PATH="/usr/local/go/bin:$PATH"
mkdir -p "$bin/.stamps"
# GOTOOLCHAIN=auto: a Go older than the wrapper modules ask for fetches the right toolchain from the module proxy.
export GOFLAGS="-mod=mod -buildvcs=false" GOTOOLCHAIN="${GOTOOLCHAIN:-auto}" CGO_ENABLED=0

kube_minor=${KUBERNETES_VERSION#v1.}; kube_minor=${kube_minor%%.*}
build_date=2026-01-01T00:00:00Z
kube_ldflags="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  kube_ldflags+=" -X $p.gitVersion=$KUBERNETES_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$kube_minor"
  kube_ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=$build_date"
done

# tool name -> "ldflags|packages"
declare -A spec=(
  [kubernetes]="$kube_ldflags|k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl"
  [etcd]="-s -w|go.etcd.io/etcd/server/v3 go.etcd.io/etcd/etcdctl/v3"
  [helm]="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean|helm.sh/helm/v3/cmd/helm"
  [kwok]="-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v}|sigs.k8s.io/kwok/cmd/kwok"
  [coredns]="-s -w|github.com/coredns/coredns"
  # Bench-only (make bench): the fixed-rate HTTP load generator, and virtual-kubelet's node library with an
  # in-memory provider (bench/vk-reference; its source hash is in the ldflags so that an edit rebuilds it).
  [vegeta]="-s -w -X main.Version=v12.13.0|github.com/tsenart/vegeta/v12"
  [vkref]="-s -w -X main.sourceHash=$(cat "$root"/bench/vk-reference/{*.go,go.mod,go.sum} | sha256sum | cut -c1-16)|spillway.dev/bench/vk-reference"
)
# binary name when it differs from the package's last element
declare -A rename=([go.etcd.io/etcd/server/v3]=etcd [go.etcd.io/etcd/etcdctl/v3]=etcdctl [github.com/coredns/coredns]=coredns
  [github.com/tsenart/vegeta/v12]=vegeta)

build() {
  local tool=$1 dir="$root/hack/tools/$1"
  local ldflags=${spec[$tool]%%|*} pkgs=${spec[$tool]#*|}
  local stamp
  stamp=$(cat "$dir/go.mod" "$dir/go.sum" <(echo "$ldflags $pkgs") | sha256sum | cut -c1-16)
  local missing=0 pkg
  for pkg in $pkgs; do [[ -x "$bin/${rename[$pkg]:-${pkg##*/}}" ]] || missing=1; done
  if ((missing == 0)) && [[ -f "$bin/.stamps/$tool" && $(cat "$bin/.stamps/$tool") == "$stamp" ]]; then
    echo "build-tools: $tool up to date"; return
  fi
  echo "build-tools: building $tool ($pkgs)"
  local start=$SECONDS out
  for pkg in $pkgs; do
    out=${rename[$pkg]:-${pkg##*/}}
    (cd "$dir" && go build -trimpath -ldflags "$ldflags" -o "$bin/$out" "$pkg")
  done
  echo "$stamp" > "$bin/.stamps/$tool"
  echo "build-tools: $tool built in $((SECONDS - start))s"
}

tools=("$@"); [[ ${#tools[@]} -gt 0 ]] || tools=(etcd kubernetes kwok helm coredns)
for t in "${tools[@]}"; do build "$t"; done
