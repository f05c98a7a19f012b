#!/bin/bash
# sandbox-init <state-dir>: PID 1 of a local sandbox's PID namespace, started by `unshare` (runtime.ts).
# Builds the sandbox's root: a tmpfs with the host's top-level directories bind-mounted (the command runs on
# the host's filesystem), private /tmp, /run and /dev/shm, its own /proc; bind-mounts the volumes,
# resolv.conf and hosts listed in <state-dir>/mounts (NUL-separated triples: source, target, ro|rw); sets the
# hostname; pivots into the root; then only reaps orphans. Every mount lives in the sandbox's mount
# namespace, so killing this process removes them all: nothing is ever mounted on the host.
# Writes <state-dir>/ready once built, or <state-dir>/failed with the reason.
set -euo pipefail
S=$1
R=$S/rootfs
fail() { echo "$*" > "$S/failed"; exit 1; }
trap 'fail "sandbox set-up failed at line $LINENO"' ERR
mkdir -p "$R"
mount -t tmpfs -o mode=0755 spillway-root "$R"
for e in /*; do
  n=${e#/}
  case $n in proc|sys|dev|tmp|run|lost+found) continue ;; esac
  if [[ -L $e ]]; then ln -s "$(readlink "$e")" "$R/$n"
  elif [[ -d $e ]]; then mkdir "$R/$n"; mount --rbind "$e" "$R/$n"
  fi
done
mkdir -p "$R/proc" "$R/sys" "$R/dev" "$R/tmp" "$R/run"
mount -t proc proc "$R/proc"
mount --rbind /sys "$R/sys"
mount --rbind /dev "$R/dev"
mount -t tmpfs -o mode=1777 shm "$R/dev/shm"
mount -t tmpfs -o mode=1777 tmp "$R/tmp"
mount -t tmpfs -o mode=0755 run "$R/run"
mkdir -p "$R/run/.spillway"
mount --bind "$S/containers" "$R/run/.spillway"
mkdir "$R/.oldroot"
cd "$R"
pivot_root . .oldroot
cd /
O=/.oldroot$S
n=0
# Makes the mount point for $1 (a path inside the sandbox) without writing to the host's filesystem: a
# missing directory under a host directory is created in an overlay of that directory (upper in the state).
ensure() {
  local t=$1 kind=$2 a
  a=$(realpath -m "$t")
  if [[ -e $a ]]; then return 0; fi
  local p=$(dirname "$a")
  while [[ ! -e $p ]]; do p=$(dirname "$p"); done
  case $p in /|/tmp|/tmp/*|/run|/run/*|/dev/shm|/dev/shm/*) ;;
    *) if [[ -w $p && $(stat -f -c %T "$p") != tmpfs ]]; then
         n=$((n + 1)); mkdir -p "$O/overlay/$n/upper" "$O/overlay/$n/work"
         mount -t overlay "overlay-$n" -o "lowerdir=$p,upperdir=$O/overlay/$n/upper,workdir=$O/overlay/$n/work" "$p"
       fi ;;
  esac
  if [[ $kind == dir ]]; then mkdir -p "$a"; else mkdir -p "$(dirname "$a")"; : > "$a"; fi
}
# Mount points first, binds second: an overlay made for a later mount point must not hide an earlier bind.
while IFS= read -r -d '' src && IFS= read -r -d '' dst && IFS= read -r -d '' mode; do
  if [[ -d $O/$src ]]; then ensure "$dst" dir; else ensure "$dst" file; fi
done < "$O/mounts"
while IFS= read -r -d '' src && IFS= read -r -d '' dst && IFS= read -r -d '' mode; do
  mount --bind "$O/$src" "$dst"
  if [[ $mode == ro ]]; then mount -o remount,bind,ro "$dst"; fi
done < "$O/mounts"
hostname "$(cat "$O/hostname")"
echo ready > "$O/ready"
umount -l /.oldroot
rmdir /.oldroot
trap - ERR
set +e
# PID 1 of the sandbox: reap whatever is orphaned into it until the sandbox is killed.
trap 'exit 0' TERM
while :; do sleep 3600 & wait $!; done
