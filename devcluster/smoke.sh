#!/usr/bin/env bash
# End-to-end smoke test of devcluster: bring a cluster up in its own state
# directory, run a 3-replica redis StatefulSet with PVCs, check scheduling,
# readiness, DNS via /etc/hosts, restarts, pod re-creation with the same IP and
# data, then bring it down and check nothing is left running.
#
#   devcluster/smoke.sh        (exits non-zero on the first failed check)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
export ORDINAL_DEVCLUSTER_DIR="${SMOKE_STATE_DIR:-${ORDINAL_CACHE:-$HOME/.cache/ordinal}/devcluster-smoke}"
export KUBECONFIG="$ORDINAL_DEVCLUSTER_DIR/kubeconfig"
ns=smoke
t0=$(date +%s)

step() { echo "--- [$(($(date +%s) - t0))s] $*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }
# wait_until SECONDS DESCRIPTION COMMAND...: poll every second
wait_until() {
  local secs=$1 what=$2; shift 2
  for ((i = 0; i < secs; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
  fail "$what (after ${secs}s)"
}

step "building devcluster"
(cd "$repo" && cargo build -q -p devcluster)
bin="${CARGO_TARGET_DIR:-$repo/target}/debug/devcluster"

cleanup() {
  local rc=$?
  if [[ $rc != 0 ]]; then
    echo "--- agent log (tail)"; tail -n 30 "$ORDINAL_DEVCLUSTER_DIR/logs/agent.log" 2>/dev/null || true
    kubectl get pods,pvc -A -o wide 2>/dev/null || true
  fi
  "$bin" down --wipe >/dev/null 2>&1 || true
  exit $rc
}
trap cleanup EXIT

step "devcluster up (state in $ORDINAL_DEVCLUSTER_DIR)"
"$bin" down --wipe >/dev/null 2>&1 || true
"$bin" up
"$bin" up | grep -q "already up" || fail "second up is not idempotent"

step "node is Ready"
kubectl get nodes
[[ "$(kubectl get node devcluster -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" == True ]] ||
  fail "node not Ready"

step "StatefulSet with 3 redis pods"
kubectl create namespace "$ns"
kubectl apply -f "$here/tests/manifests/redis-sts.yaml"
ready_count() {
  kubectl -n "$ns" get pods -l app=smoke-redis \
    -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c True
}
wait_until 90 "3 pods Ready" bash -c "[[ \$(kubectl -n $ns get pods -l app=smoke-redis -o jsonpath='{range .items[*]}{.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}' | grep -c True) == 3 ]]"
wait_until 30 "3 PVCs Bound" bash -c "[[ \$(kubectl -n $ns get pvc -o jsonpath='{range .items[*]}{.status.phase}{\"\\n\"}{end}' | grep -c Bound) == 3 ]]"
kubectl get nodes,pods,pvc -A -o wide
echo "ready pods: $(ready_count)"

ip() { kubectl -n "$ns" get pod "$1" -o jsonpath='{.status.podIP}'; }
ip0=$(ip smoke-redis-0); ip1=$(ip smoke-redis-1); ip2=$(ip smoke-redis-2)
step "pod IPs: $ip0 $ip1 $ip2"
for a in "$ip0" "$ip1" "$ip2"; do
  [[ "$(redis-cli -h "$a" ping)" == PONG ]] || fail "redis at $a does not answer"
done
redis-cli -h "$ip0" set smoke-key smoke-value >/dev/null
redis-cli -h "$ip0" config set appendfsync always >/dev/null

step "kubectl logs"
kubectl -n "$ns" logs smoke-redis-0 --tail=20 | grep -q "Ready to accept connections" || fail "kubectl logs"

step "DNS inside pod smoke-redis-1 (its /etc/hosts)"
pid1=$(cut -d' ' -f1 "$ORDINAL_DEVCLUSTER_DIR/pods/${ns}_smoke-redis-1/redis.pid")
in_pod() { nsenter -t "$pid1" -m -u "$@"; }
[[ "$(in_pod hostname)" == smoke-redis-1 ]] || fail "hostname in pod"
in_pod getent hosts smoke-redis-0.smoke-redis.smoke.svc.cluster.local | grep -q "^$ip0 " || fail "pod FQDN"
in_pod getent hosts smoke-redis-2.smoke-redis | grep -q "^$ip2 " || fail "short pod name"
in_pod getent hosts smoke-redis.smoke.svc.cluster.local | grep -qE "^127\.0\.0\.[0-9]+ " || fail "service name"
[[ "$(in_pod redis-cli -h smoke-redis-0.smoke-redis get smoke-key)" == smoke-value ]] || fail "redis via DNS name"

step "SIGKILL of redis in smoke-redis-1 shows as a restart"
kill -9 "$pid1"
wait_until 30 "restartCount 1" bash -c "[[ \$(kubectl -n $ns get pod smoke-redis-1 -o jsonpath='{.status.containerStatuses[0].restartCount}') == 1 ]]"
wait_until 30 "smoke-redis-1 Ready again" bash -c "[[ \$(kubectl -n $ns get pod smoke-redis-1 -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}') == True ]]"
kubectl -n "$ns" get pod smoke-redis-1 -o jsonpath='{.status.containerStatuses[0].lastState}{"\n"}'

step "delete smoke-redis-0: recreated with the same IP and its data"
old_uid=$(kubectl -n "$ns" get pod smoke-redis-0 -o jsonpath='{.metadata.uid}')
kubectl -n "$ns" delete pod smoke-redis-0 --wait=true --timeout=30s
wait_until 60 "smoke-redis-0 recreated and Ready" bash -c "[[ \$(kubectl -n $ns get pod smoke-redis-0 -o jsonpath='{.metadata.uid} {.status.conditions[?(@.type==\"Ready\")].status}') == *' True' && \$(kubectl -n $ns get pod smoke-redis-0 -o jsonpath='{.metadata.uid}') != $old_uid ]]"
[[ "$(ip smoke-redis-0)" == "$ip0" ]] || fail "smoke-redis-0 got a new IP $(ip smoke-redis-0), was $ip0"
[[ "$(redis-cli -h "$ip0" get smoke-key)" == smoke-value ]] || fail "data lost across pod re-creation"
kubectl -n "$ns" get pods -o wide

step "devcluster run: host command resolving cluster names"
[[ "$("$bin" run -- redis-cli -h smoke-redis-0.smoke-redis.smoke.svc.cluster.local get smoke-key)" == smoke-value ]] ||
  fail "devcluster run: redis via FQDN"

step "MariaDB StatefulSet shaped like the operator's, and a Job"
kubectl apply -f "$here/tests/manifests/mariadb-sts.yaml"
wait_until 60 "job hello Complete" bash -c "[[ \$(kubectl -n $ns get job hello -o jsonpath='{.status.succeeded}') == 1 ]]"
wait_until 150 "2 mdb pods Ready" bash -c "[[ \$(kubectl -n $ns get pods -l app=mdb -o jsonpath='{range .items[*]}{.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}' | grep -c True) == 2 ]]"
kubectl -n "$ns" get pods -l app=mdb -o wide
sql() { "$bin" run -- mariadb -h "$1" -uroot "-ps3cr'et" -N -e "$2"; }
[[ "$(sql mdb-primary.smoke.svc.cluster.local 'select @@hostname')" == mdb-0 ]] || fail "mdb-primary is not mdb-0"
[[ "$(sql mdb-1.mdb.smoke.svc.cluster.local 'select @@server_id')" == 2 ]] || fail "server_id of mdb-1"
mpid=$(cut -d' ' -f1 "$ORDINAL_DEVCLUSTER_DIR/pods/${ns}_mdb-1/mariadb.pid")
kill -9 "$mpid"
wait_until 30 "mdb-1 restartCount 1" bash -c "[[ \$(kubectl -n $ns get pod mdb-1 -o jsonpath='{.status.containerStatuses[0].restartCount}') == 1 ]]"
wait_until 60 "mdb-1 Ready again" bash -c "[[ \$(kubectl -n $ns get pod mdb-1 -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}') == True ]]"
[[ "$(sql mdb-1.mdb.smoke.svc.cluster.local 'select @@server_id')" == 2 ]] || fail "mdb-1 after restart"

step "devcluster down leaves nothing running"
"$bin" down
sleep 1
if pgrep -af "redis-server 127\.0\.0\.1[0-9]:6379"; then fail "redis-server still running"; fi
if pgrep -af "mariadbd.*--bind-address=127\.0\.0\.1[0-9]"; then fail "mariadbd still running"; fi
if pgrep -af "$ORDINAL_DEVCLUSTER_DIR"; then fail "control-plane or agent process still running"; fi
"$bin" status | grep -q "devcluster is down" || fail "status does not say down"

step "PASS (1 passed, 0 failed)"
