#!/bin/bash
# container-shim <run-dir> <workingDir> <argv...>: one run of one container, inside the sandbox (started with
# nsenter by runtime.ts). It outlives the operator, so everything the operator needs is written to files in
# <run-dir>: shim.pid, started (epoch seconds), log (+ log.1 after rotation; CRI format
# "<RFC 3339> stdout F <line>") and finally exit ("<status> <epoch seconds>"; above 128: killed by signal
# status-128). The process runs in its own process group with the environment in <run-dir>/env
# (NUL-separated); SIGTERM is forwarded to the group, SIGUSR1 becomes SIGKILL for the group.
d=$1; wd=$2; shift 2
max=${SPILLWAY_LOG_MAX_BYTES:-10485760}
echo $$ > "$d/shim.pid"
if [[ -f $d/cgroups ]]; then while IFS= read -r cg; do echo 0 > "$cg" 2>/dev/null; done < "$d/cgroups"; fi
mapfile -d '' envs < "$d/env"
mkfifo "$d/out"
stamp() {
  local line ts now size=0
  [[ -f $d/log ]] && size=$(stat -c %s "$d/log")
  exec 3>>"$d/log"
  while IFS= read -r line || [[ -n $line ]]; do
    now=$EPOCHREALTIME
    printf -v ts '%(%Y-%m-%dT%H:%M:%S)T.%s000Z' "${now%.*}" "${now#*.}"
    printf '%s stdout F %s\n' "$ts" "$line" >&3
    size=$((size + ${#line} + 40))
    if ((size > max)); then exec 3>&-; mv -f "$d/log" "$d/log.1"; exec 3>>"$d/log"; size=0; fi
  done < "$d/out"
}
TZ=UTC0 stamp &
sp=$!
set -m
( cd "$wd" || { echo "spillway: cannot enter workingDir $wd" >&2; exit 127; }
  exec env -i "${envs[@]}" "$@" ) > "$d/out" 2>&1 &
cp=$!
set +m
echo "$EPOCHREALTIME" > "$d/started"
sig=
trap 'sig=1; kill -TERM -- -$cp 2>/dev/null' TERM
trap 'sig=1; kill -KILL -- -$cp 2>/dev/null' USR1
while :; do
  sig=
  wait $cp
  code=$?
  [[ -n $sig ]] && continue
  break
done
for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 $sp 2>/dev/null || break; sleep 0.1; done
echo "$code $EPOCHREALTIME" > "$d/exit.tmp"
mv -f "$d/exit.tmp" "$d/exit"
