#!/usr/bin/env bash
# Builds the pinned Go binaries (etcd, kube-*, kubectl, kube-proxy, kubelet, agnhost, helm, kwok, coredns, metrics-server, containerd and its
# runc shim, runc, the CNI plugins, crictl, the OCI registry) into $SPILLWAY_BIN (default: bin/, gitignored; the CNI
# plugins in bin/cni/) from the wrapper modules in hack/tools/. Each tool is rebuilt only
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
  [kubernetes]="$kube_ldflags|k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl k8s.io/kubernetes/cmd/kube-proxy k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/test/images/agnhost"
  [etcd]="-s -w|go.etcd.io/etcd/server/v3 go.etcd.io/etcd/etcdctl/v3"
  [helm]="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean|helm.sh/helm/v3/cmd/helm"
  [kwok]="-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v}|sigs.k8s.io/kwok/cmd/kwok"
  [coredns]="-s -w|github.com/coredns/coredns"
  # The resource metrics API (kubectl top, the HPA's CPU) of the real nodes and the virtual node, as a cluster addon.
  [metrics-server]="-s -w -X k8s.io/client-go/pkg/version.gitVersion=$METRICS_SERVER_VERSION|sigs.k8s.io/metrics-server/cmd/metrics-server"
  # The container runtime of the local provider: containerd with its runc shim (no cgo, no snapshotters this
  # machine lacks), runc (cgo, for seccomp), the CNI plugins a pod network needs, crictl to debug, and the
  # loopback OCI registry images are pulled from.
  [containerd]="-s -w -X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION|github.com/containerd/containerd/v2/cmd/containerd github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 github.com/containerd/containerd/v2/cmd/ctr"
  [runc]="-s -w -X main.version=${RUNC_VERSION#v}|github.com/opencontainers/runc"
  [cni]="-s -w|github.com/containernetworking/plugins/plugins/main/bridge github.com/containernetworking/plugins/plugins/ipam/host-local github.com/containernetworking/plugins/plugins/main/loopback github.com/containernetworking/plugins/plugins/meta/portmap"
  [crictl]="-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION|sigs.k8s.io/cri-tools/cmd/crictl"
  [registry]="-s -w -X github.com/distribution/distribution/v3/version.version=$REGISTRY_VERSION|github.com/distribution/distribution/v3/cmd/registry"
  # Bench-only (make bench): the fixed-rate HTTP load generator, and virtual-kubelet's node library with an
  # in-memory provider (bench/vk-reference; its source hash is in the ldflags so that an edit rebuilds it).
  [vegeta]="-s -w -X main.Version=v12.13.0|github.com/tsenart/vegeta/v12"
  [vkref]="-s -w -X main.sourceHash=$(cat "$root"/bench/vk-reference/{*.go,go.mod,go.sum} | sha256sum | cut -c1-16)|spillway.dev/bench/vk-reference"
)
# binary name when it differs from the package's last element
declare -A rename=([go.etcd.io/etcd/server/v3]=etcd [go.etcd.io/etcd/etcdctl/v3]=etcdctl [github.com/coredns/coredns]=coredns
  [github.com/tsenart/vegeta/v12]=vegeta [github.com/opencontainers/runc]=runc)
# build tags, cgo and output folder (under $bin) when they differ from none, CGO_ENABLED=0 and $bin itself.
# runc needs cgo and libseccomp (hack/system-packages.sh) so that seccomp RuntimeDefault works.
declare -A tags=([containerd]="no_btrfs no_devmapper no_zfs" [runc]="seccomp urfave_cli_no_docs")
declare -A cgo=([runc]=1)
declare -A subdir=([cni]=cni)

build() {
  local tool=$1 dir="$root/hack/tools/$1"
  local ldflags=${spec[$tool]%%|*} pkgs=${spec[$tool]#*|}
  local stamp
  local out_dir="$bin${subdir[$tool]:+/${subdir[$tool]}}" tool_tags=${tags[$tool]:-} tool_cgo=${cgo[$tool]:-0}
  stamp=$(cat "$dir/go.mod" "$dir/go.sum" <(echo "$ldflags $pkgs $tool_tags $tool_cgo") | sha256sum | cut -c1-16)
  local missing=0 pkg
  for pkg in $pkgs; do [[ -x "$out_dir/${rename[$pkg]:-${pkg##*/}}" ]] || missing=1; done
  if ((missing == 0)) && [[ -f "$bin/.stamps/$tool" && $(cat "$bin/.stamps/$tool") == "$stamp" ]]; then
    echo "build-tools: $tool up to date"; return
  fi
  echo "build-tools: building $tool ($pkgs)"
  local start=$SECONDS out
  for pkg in $pkgs; do
    out=${rename[$pkg]:-${pkg##*/}}
    (cd "$dir" && CGO_ENABLED=$tool_cgo go build -trimpath -tags "$tool_tags" -ldflags "$ldflags" -o "$out_dir/$out" "$pkg")
  done
  echo "$stamp" > "$bin/.stamps/$tool"
  echo "build-tools: $tool built in $((SECONDS - start))s"
}

# The CRI v1 protocol the local provider speaks to containerd (operator/providers/local/cri/): api.proto of the
# k8s.io/cri-api module at the Kubernetes version, from the Go module proxy, into $bin/cri/.
cri_proto() {
  local want="$bin/cri/api-v0${KUBERNETES_VERSION#v1}.proto"
  [[ -s $want ]] && { echo "build-tools: cri-api up to date"; return; }
  local dir
  dir=$(cd "$root/hack/tools/kubernetes" && go mod download -json "k8s.io/cri-api@v0${KUBERNETES_VERSION#v1}" |
    sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
  mkdir -p "$bin/cri"
  install -m 0644 "$dir/pkg/apis/runtime/v1/api.proto" "$want.tmp" && mv "$want.tmp" "$want"
  ln -sfn "$(basename "$want")" "$bin/cri/api.proto"
  echo "build-tools: cri-api proto from k8s.io/cri-api@v0${KUBERNETES_VERSION#v1}"
}
declare -A special=([cri-api]=cri_proto)

tools=("$@"); [[ ${#tools[@]} -gt 0 ]] || tools=(etcd kubernetes kwok helm coredns metrics-server containerd runc cni crictl registry cri-api)
for t in "${tools[@]}"; do
  if [[ -n ${special[$t]:-} ]]; then "${special[$t]}"; else build "$t"; fi
done
