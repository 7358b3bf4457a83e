#!/usr/bin/env bash
# Scale benchmark: N one-member RedisReplications (and M one-member
# MySQLClusters) on a private devcluster, the operator as a host process.
# Measures the time until all are Ready, then three windows of WINDOW
# seconds: idle; light writes on 10% of the Redis clusters; and with the
# operator stopped (the devcluster's own API traffic, subtracted from the
# other two). Prints operator RSS/CPU and API requests per second by verb and
# resource (kube-apiserver's apiserver_request_total).
#
#   unshare -n bash -c 'ip link set lo up && scripts/bench-scale.sh'
#
# Settings (environment): N (100), MYSQL (2), WINDOW (60 s),
# ORDINAL (operator binary, default $CARGO_TARGET_DIR/debug/ordinal),
# DEVCLUSTER (default $CARGO_TARGET_DIR/debug/devcluster), BLOCK (ip block, 144),
# BLOCKS (/24 blocks the devcluster spans; default: enough for N + MYSQL
# clusters, each one pod and two ClusterIPs: 241 pods and 254 Services a block,
# Services filled to at most 3/4: a nearly full range makes the API server's
# ClusterIP allocator retry until Service creations time out),
# READY_TIMEOUT (900 s: then measure with those Ready), SETTLE (30 s between
# Ready and the first window).
set -euo pipefail
export LC_ALL=C

N=${N:-100}
MYSQL=${MYSQL:-2}
WINDOW=${WINDOW:-60}
TARGET=${CARGO_TARGET_DIR:-target}
ORDINAL=${ORDINAL:-$TARGET/debug/ordinal}
DEVCLUSTER=${DEVCLUSTER:-$TARGET/debug/devcluster}
BLOCK=${BLOCK:-144}
if [ -z "${BLOCKS:-}" ]; then
  BLOCKS=1
  while [ $((241 * BLOCKS)) -lt $((N + MYSQL)) ] || [ $((254 * BLOCKS * 3 / 4)) -lt $((2 * (N + MYSQL) + 2)) ]; do
    BLOCKS=$((BLOCKS * 2))
  done
fi
READY_TIMEOUT=${READY_TIMEOUT:-900}
SETTLE=${SETTLE:-30}
NS=bench
ROOT=$(cd "$(dirname "$0")/.." && pwd)

STATE=$(mktemp -d /var/tmp/ordinal-bench-scale-XXXXXX)
export ORDINAL_DEVCLUSTER_DIR=$STATE ORDINAL_DEVCLUSTER_IP_BLOCK=$BLOCK ORDINAL_DEVCLUSTER_IP_BLOCKS=$BLOCKS
export KUBECONFIG=$STATE/kubeconfig
OP_PID=
WRITERS=()
cleanup() {
  for p in "${WRITERS[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -n "$OP_PID" ] && kill "$OP_PID" 2>/dev/null || true
  "$DEVCLUSTER" down --wipe >/dev/null 2>&1 || true
}
trap cleanup EXIT

log() { echo "[$(date +%T)] $*" >&2; }
load() { cut -d' ' -f1-3 /proc/loadavg; }

log "devcluster up (state $STATE, $BLOCKS blocks from $BLOCK)"
"$DEVCLUSTER" up --no-build >/dev/null
kubectl apply --server-side -f "$ROOT/crds/ordinal.dev.yaml" >/dev/null
kubectl wait --for=condition=Established crd --all --timeout=60s >/dev/null
kubectl create namespace $NS >/dev/null

{
  for i in $(seq 1 "$N"); do
    cat <<EOF
---
apiVersion: ordinal.dev/v1alpha1
kind: RedisReplication
metadata: {name: r$i, namespace: $NS}
spec: {replicas: 1, storage: {size: 1Gi}}
EOF
  done
  for i in $(seq 1 "$MYSQL"); do
    cat <<EOF
---
apiVersion: ordinal.dev/v1alpha1
kind: MySQLCluster
metadata: {name: m$i, namespace: $NS}
spec: {replicas: 1, storage: {size: 1Gi}, config: {innodb_buffer_pool_size: 64M}}
EOF
  done
} | kubectl apply -f - >/dev/null

log "operator $ORDINAL"
"$DEVCLUSTER" run -- "$ORDINAL" run --http-addr 127.0.0.1:0 >"$STATE/operator.log" 2>&1 &
OP_PID=$!
START=$(date +%s)
TOTAL=$((N + MYSQL))
while true; do
  ready=$(kubectl get redisreplications,mysqlclusters -n $NS \
    -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' |
    grep -c '^True$' || true)
  [ "$ready" -ge "$TOTAL" ] && break
  if [ $(($(date +%s) - START)) -gt "$READY_TIMEOUT" ]; then
    log "only $ready of $TOTAL Ready after ${READY_TIMEOUT}s; measuring anyway"; break
  fi
  sleep 5
done
READY_SECS=$(($(date +%s) - START))
log "$ready of $TOTAL Ready after ${READY_SECS}s (load average $(load)); settling ${SETTLE} s"
sleep "$SETTLE"

# Sum of apiserver_request_total by "VERB resource[/subresource]".
snapshot() {
  kubectl get --raw /metrics | awk '
    /^apiserver_request_total\{/ {
      verb=""; res=""; sub_="";
      if (match($0, /verb="[^"]*"/)) verb=substr($0, RSTART+6, RLENGTH-7);
      if (match($0, /resource="[^"]*"/)) res=substr($0, RSTART+10, RLENGTH-11);
      if (match($0, /subresource="[^"]*"/)) sub_=substr($0, RSTART+13, RLENGTH-14);
      if (res == "") next;
      if (verb == "WATCH" || verb == "CONNECT") next;
      key = verb " " res (sub_ != "" ? "/" sub_ : "");
      sum[key] += $NF
    }
    END { for (k in sum) print k "\t" sum[k] }' | sort
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$OP_PID/stat"; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$OP_PID/status"; }
anon_kib() { awk '/^RssAnon/ {print $2}' "/proc/$OP_PID/status"; }

# rss_stats COLUMN: "min/median/max" MiB of column COLUMN of $STATE/$name.rss
rss_stats() {
  cut -d' ' -f"$1" "$STATE/$name.rss" | sort -n |
    awk '{ v[NR] = $1 } END { printf "%.0f/%.0f/%.0f", v[1] / 1024, v[int((NR + 1) / 2)] / 1024, v[NR] / 1024 }'
}

# window NAME: request rates over WINDOW seconds into $STATE/NAME.rates
window() {
  local name=$1 c0 c1
  snapshot >"$STATE/$name.0"
  c0=$( [ -n "$OP_PID" ] && cpu_ticks || echo 0)
  # RSS once a second through the window (it moves with the periodic
  # malloc_trim): min / median / max of VmRSS and of RssAnon.
  : >"$STATE/$name.rss"
  local end=$(($(date +%s) + WINDOW))
  while [ "$(date +%s)" -lt "$end" ]; do
    [ -n "$OP_PID" ] && echo "$(rss_kib) $(anon_kib)" >>"$STATE/$name.rss"
    sleep 1
  done
  c1=$( [ -n "$OP_PID" ] && cpu_ticks || echo 0)
  snapshot >"$STATE/$name.1"
  join -t $'\t' -a 2 -e 0 -o 0,1.2,2.2 "$STATE/$name.0" "$STATE/$name.1" |
    awk -F'\t' -v w="$WINDOW" '{ r = ($3 - $2) / w; if (r > 0) printf "%s\t%.3f\n", $1, r }' \
      >"$STATE/$name.rates"
  if [ -n "$OP_PID" ]; then
    echo "$name: operator CPU $(awk -v a="$c0" -v b="$c1" -v w="$WINDOW" -v hz="$(getconf CLK_TCK)" \
      'BEGIN { printf "%.1f", 100 * (b - a) / hz / w }')% of a core, RSS $(rss_stats 1) MiB (anonymous $(rss_stats 2) MiB; min/median/max of $(wc -l <"$STATE/$name.rss") samples), load average $(load)"
  fi
}

# Rates of window $1 minus the background window; writes vs reads totals.
report() {
  local name=$1
  echo "== $name: API requests/s by the operator (background subtracted)"
  join -t $'\t' -a 1 -e 0 -o 0,1.2,2.2 "$STATE/$name.rates" "$STATE/background.rates" |
    awk -F'\t' -v n="$TOTAL" '
      { d = $2 - $3; if (d < 0.005) next; printf "  %-45s %8.3f/s\n", $1, d;
        split($1, a, " "); if (a[1] == "GET" || a[1] == "LIST") r += d; else w += d }
      END { printf "  reads %.3f/s (%.4f per cluster), writes %.3f/s (%.2f per cluster per minute)\n",
              r, r / n, w, 60 * w / n }'
}

# Every change of a cluster object while windows run: which status fields
# changed between consecutive versions of the same cluster.
# (kubectl watches one resource type at a time.)
for kind in redisreplications mysqlclusters; do
  kubectl get $kind -n $NS -w -o json --output-watch-events >"$STATE/$kind.watch" 2>"$STATE/$kind.watch.err" &
  WRITERS+=($!)
done

window idle

for i in $(seq 1 $((N / 10 > 0 ? N / 10 : 1))); do
  ip=$(kubectl get pod -n $NS "r$i-0" -o jsonpath='{.status.podIP}' 2>/dev/null) || continue
  pw=$(kubectl get secret -n $NS "r$i-auth" -o jsonpath='{.data.password}' 2>/dev/null | base64 -d) || continue
  [ -n "$ip" ] && [ -n "$pw" ] || continue
  "$DEVCLUSTER" run -- redis-cli -h "$ip" -a "$pw" --no-auth-warning -r -1 -i 0.1 \
    INCR bench:counter >/dev/null 2>&1 &
  WRITERS+=($!)
done
window writes
for p in "${WRITERS[@]}"; do kill "$p" 2>/dev/null || true; done
WRITERS=()

# Fields that changed between consecutive versions of one cluster (the first
# version of each, from the watch's initial list, is the baseline).
changed_fields() {
  jq -c -s --argjson skip '["metadata.resourceVersion","metadata.managedFields"]' '
    def paths_of: [paths(scalars)] | map(map(tostring) | join("."));
    reduce .[] as $e ({seen: {}, out: {}};
      ($e.object.kind + "/" + $e.object.metadata.name) as $k
      | if .seen[$k] == null then .seen[$k] = $e.object
        else
          (.seen[$k]) as $a | ($e.object) as $b
          | ([($a | paths_of[]), ($b | paths_of[])] | unique
             | map(select(. as $p | ($skip | index($p)) == null
                   and ($p | startswith("metadata.managedFields") | not)))
             | map(select(. as $p | ($a | getpath($p | split(".") | map(tonumber? // .)))
                   != ($b | getpath($p | split(".") | map(tonumber? // .)))))) as $d
          | .seen[$k] = $b
          | reduce $d[] as $f (.; .out[$f] += 1)
        end) | .out' "$STATE/redisreplications.watch" "$STATE/mysqlclusters.watch"
}

kill "$OP_PID"
wait "$OP_PID" 2>/dev/null || true
OP_PID=
sleep 5
window background

echo "clusters: $N RedisReplications + $MYSQL MySQLClusters; $ready Ready after ${READY_SECS}s; load average now $(load)"
report idle
report writes
echo "== cluster objects changed during the idle and writes windows (field: versions)"
changed_fields | jq -r 'to_entries[] | "  \(.key): \(.value)"' || true
echo "== background (devcluster components, no operator): requests/s"
sed 's/^/  /' "$STATE/background.rates"
