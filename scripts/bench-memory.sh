#!/usr/bin/env bash
# Memory of the operator at N one-member RedisReplications, for several
# builds or settings against the same clusters: a private devcluster, the
# clusters created once, then for each variant the operator started, all
# clusters Ready, SETTLE seconds, RSS (total, anonymous, file-backed) from
# /proc and a copy of /proc/PID/smaps in $OUT, then the operator killed
# (SIGKILL, so a heaptrack wrapper records the live heap as "leaked").
#
#   unshare -n bash -c 'ip link set lo up && scripts/bench-memory.sh'
#
# VARIANTS: "name|ENV=VALUE ...|/path/to/ordinal|wrapper" separated by ';',
# e.g. "main||/tmp/ordinal-main|;trim2|MALLOC_ARENA_MAX=2|$T/debug/ordinal|;
# heap||$T/debug/ordinal|heaptrack -o /var/tmp/heap". Settings: N (100),
# SETTLE (45 s), OUT (a new directory under /var/tmp).
set -euo pipefail
N=${N:-100}
SETTLE=${SETTLE:-45}
TARGET=${CARGO_TARGET_DIR:-target}
DEVCLUSTER=${DEVCLUSTER:-$TARGET/debug/devcluster}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$(mktemp -d /var/tmp/ordinal-bench-memory-XXXXXX)}
VARIANTS=${VARIANTS:-"this||$TARGET/debug/ordinal|"}
mkdir -p "$OUT"
STATE=$(mktemp -d /var/tmp/ordinal-bench-memory-state-XXXXXX)
BLOCKS=1
while [ $((241 * BLOCKS)) -lt "$N" ] || [ $((254 * BLOCKS * 3 / 4)) -lt $((2 * N + 2)) ]; do BLOCKS=$((BLOCKS * 2)); done
export ORDINAL_DEVCLUSTER_DIR=$STATE ORDINAL_DEVCLUSTER_IP_BLOCK=${BLOCK:-144} ORDINAL_DEVCLUSTER_IP_BLOCKS=$BLOCKS
export KUBECONFIG=$STATE/kubeconfig
OP=
cleanup() {
  [ -n "$OP" ] && kill -9 "$OP" 2>/dev/null || true
  "$DEVCLUSTER" down --wipe >/dev/null 2>&1 || true
}
trap cleanup EXIT
log() { echo "[$(date +%T)] $*" >&2; }

"$DEVCLUSTER" up --no-build >/dev/null
kubectl apply --server-side -f "$ROOT/crds/ordinal.dev.yaml" >/dev/null
kubectl wait --for=condition=Established crd --all --timeout=60s >/dev/null
kubectl create namespace bench >/dev/null
for i in $(seq 1 "$N"); do
  printf -- '---\napiVersion: ordinal.dev/v1alpha1\nkind: RedisReplication\nmetadata: {name: r%s, namespace: bench}\nspec: {replicas: 1, storage: {size: 1Gi}}\n' "$i"
done | kubectl apply -f - >/dev/null

wait_ready() {
  local start ready
  start=$(date +%s)
  while true; do
    ready=$(kubectl get redisreplications -n bench \
      -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' |
      grep -c '^True$' || true)
    [ "$ready" -ge "$N" ] && break
    [ $(($(date +%s) - start)) -gt 900 ] && break
    sleep 5
  done
  log "$ready of $N Ready after $(($(date +%s) - start)) s"
}

IFS=';' read -ra LIST <<<"$VARIANTS"
for v in "${LIST[@]}"; do
  IFS='|' read -r name envs bin wrap <<<"$v"
  # shellcheck disable=SC2086 # envs and wrap are word lists
  "$DEVCLUSTER" run -- env $envs $wrap "$bin" run --http-addr 127.0.0.1:0 >"$OUT/operator-$name.log" 2>&1 &
  OP=$!
  wait_ready
  sleep "$SETTLE"
  pid=$(pgrep -f "^$bin run" | head -1)
  echo "$name: N=$N $(awk '/^(VmRSS|RssAnon|RssFile):/ {printf "%s %d MiB  ", $1, $2 / 1024}' "/proc/$pid/status")load average $(cut -d' ' -f1-3 /proc/loadavg)"
  cp "/proc/$pid/smaps" "$OUT/smaps-$name"
  kill -9 "$pid" "$OP" 2>/dev/null || true
  wait "$OP" 2>/dev/null || true
  OP=
  sleep 3
done
log "smaps and operator logs in $OUT"
