#!/usr/bin/env bash
# The one list of system packages spillway needs, installed when missing. `make test`, `make demo`, `make tools`
# and .ci/run all call this script, so a fresh machine needs nothing but the README's commands.
#
# As root it installs what is missing with apt-get; as anyone else it prints the exact apt-get line and fails.
# A machine that already has every command does nothing (no apt-get update).
#
#   hack/system-packages.sh        install what is missing (or print the line to do it)
#   hack/system-packages.sh --list print "command package" pairs
set -euo pipefail

# command → Debian package. nft: the network guard and the local provider's service proxy; ip: blackhole
# routes, the sandbox bridge and veths; nsenter/unshare: sandboxes' namespaces; make; go: the pinned Kubernetes
# binaries (hack/build-tools.sh); python3: the demo's and the local provider's e2e web server. Node.js and npm
# come with the machine; hack/ensure-node.sh fetches a newer Node from the npm registry when it is too old.
# gcc, pkg-config and libseccomp's headers: runc is built with cgo so that seccomp RuntimeDefault works. An entry
# whose first word is a path is a file that must exist (a library's header) instead of a command. javac and mvn:
# the spark image (hack/images/spark.ts) resolves Spark's jars from Maven Central and compiles its SparkPi.
packages=(
  "nft nftables"
  "ip iproute2"
  "nsenter util-linux"
  "unshare util-linux"
  "make make"
  "go golang-go"
  "python3 python3"
  "gcc gcc"
  "pkg-config pkg-config"
  "/usr/include/seccomp.h libseccomp-dev"
  "javac openjdk-17-jdk-headless"
  "mvn maven"
)

if [[ ${1:-} == --list ]]; then
  printf '%s\n' "${packages[@]}"
  exit 0
fi

# The machine image keeps Go in /usr/local/go; a shell without it on PATH still finds it.
[[ -x /usr/local/go/bin/go ]] && export PATH="/usr/local/go/bin:$PATH"

need=()
for pair in "${packages[@]}"; do
  cmd=${pair%% *} pkg=${pair#* }
  if [[ $cmd == /* ]]; then [[ -e $cmd ]] && continue; else command -v "$cmd" >/dev/null 2>&1 && continue; fi
  [[ " ${need[*]:-} " == *" $pkg "* ]] || need+=("$pkg")
done
((${#need[@]} == 0)) && exit 0

line="apt-get update && apt-get install -y --no-install-recommends ${need[*]}"
if ((EUID != 0)); then
  echo "system-packages: missing ${need[*]}; as root, run:" >&2
  echo "  $line" >&2
  exit 1
fi
echo "system-packages: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
