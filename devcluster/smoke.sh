#!/usr/bin/env bash
# End-to-end smoke test of devcluster: bring a cluster up in its own state
# directory, run a 3-replica redis StatefulSet with PVCs, check scheduling,
# readiness, DNS via /etc/hosts, restarts, pod re-creation with the same IP and
# data, then bring it down and check nothing is left running. With the netns
# network (the default here) also: EndpointSlices with pod addresses, a
# ClusterIP through kube-proxy, a partition and its heal, and that `down`
# removes the namespaces and routes.
#
#   devcluster/smoke.sh                                  (netns network)
#   ORDINAL_DEVCLUSTER_NETWORK=loopback devcluster/smoke.sh
#   (exits non-zero on the first failed check)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
export ORDINAL_DEVCLUSTER_DIR="${SMOKE_STATE_DIR:-${ORDINAL_CACHE:-$HOME/.cache/ordinal}/devcluster-smoke}"
export KUBECONFIG="$ORDINAL_DEVCLUSTER_DIR/kubeconfig"
export ORDINAL_DEVCLUSTER_NETWORK="${ORDINAL_DEVCLUSTER_NETWORK:-netns}"
# Its own block, so that it does not collide with a demo cluster (block 0).
export ORDINAL_DEVCLUSTER_IP_BLOCK="${ORDINAL_DEVCLUSTER_IP_BLOCK:-200}"
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

step "devcluster up (state in $ORDINAL_DEVCLUSTER_DIR, network $ORDINAL_DEVCLUSTER_NETWORK)"
"$bin" down --wipe >/dev/null 2>&1 || true
"$bin" up
"$bin" up | grep -q "already up" || fail "second up is not idempotent"
netns=0
grep -q '"netns"' "$ORDINAL_DEVCLUSTER_DIR/network.json" && netns=1
"$bin" status

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
in_pod getent hosts smoke-redis.smoke.svc.cluster.local | grep -qE "^($ip0|$ip1|$ip2) " || fail "headless service name"
[[ "$(in_pod redis-cli -h smoke-redis-0.smoke-redis get smoke-key)" == smoke-value ]] || fail "redis via DNS name"

if [[ $netns == 1 ]]; then
  step "netns: EndpointSlices list the pod addresses"
  slices() { kubectl -n "$ns" get endpointslices -l kubernetes.io/service-name=smoke-redis \
    -o jsonpath='{range .items[*].endpoints[*]}{.addresses[0]}{"\n"}{end}' | sort | tr '\n' ' '; }
  want="$(printf '%s\n' "$ip0" "$ip1" "$ip2" | sort | tr '\n' ' ')"
  slices_ok() { [[ "$(slices)" == "$want" ]]; }
  wait_until 30 "endpointslices = $want" slices_ok
  echo "endpointslice addresses: $(slices)"
  step "netns: a ClusterIP Service through kube-proxy, from the node namespace and from the host"
  kubectl -n "$ns" expose pod smoke-redis-2 --name smoke-r2 --port 6379
  cip=$(kubectl -n "$ns" get svc smoke-r2 -o jsonpath='{.spec.clusterIP}')
  cip_ok() { [[ "$("$bin" run -- redis-cli -h "$cip" ping)" == PONG ]]; }
  wait_until 30 "redis via ClusterIP $cip (devcluster run)" cip_ok
  [[ "$(redis-cli -h "$cip" config get bind | tail -1)" == "$ip2" ]] || fail "ClusterIP from the host"
  in_pod getent hosts smoke-r2.smoke.svc.cluster.local | grep -q "^$cip " || fail "service name → ClusterIP"
  [[ "$(nsenter -t "$pid1" -m -u -n redis-cli -h smoke-r2 ping)" == PONG ]] || fail "pod → ClusterIP"
  step "netns: partition host ↔ smoke-redis-0, then heal"
  "$bin" partition -n "$ns" host smoke-redis-0
  if timeout 3 redis-cli -h "$ip0" ping >/dev/null 2>&1; then fail "host reached a partitioned pod"; fi
  [[ "$("$bin" run -- redis-cli -h "$ip0" ping)" == PONG ]] || fail "partition host cut the node namespace too"
  [[ "$(redis-cli -h "$ip1" ping)" == PONG ]] || fail "partition cut another pod"
  "$bin" heal
  [[ "$(redis-cli -h "$ip0" ping)" == PONG ]] || fail "heal"
fi

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
mip0=$(ip mdb-0)
nsid=$(sed -n 's/.*"id": "\(.*\)".*/\1/p' "$ORDINAL_DEVCLUSTER_DIR/network.json")
"$bin" down
sleep 1
for a in "$ip0" "$ip1" "$ip2"; do
  if pgrep -af "redis-server ${a//./\\.}:6379"; then fail "redis-server $a still running"; fi
done
if pgrep -af "mariadbd.*--bind-address=${mip0//./\\.}( |$)"; then fail "mariadbd still running"; fi
if pgrep -af "$ORDINAL_DEVCLUSTER_DIR"; then fail "control-plane or agent process still running"; fi
"$bin" status | grep -q "devcluster is down" || fail "status does not say down"
if [[ $netns == 1 ]]; then
  if ls /run/netns 2>/dev/null | grep -q -- "-$nsid"; then fail "network namespaces left: $(ls /run/netns)"; fi
  if command ip link show "odh$nsid" >/dev/null 2>&1; then fail "host link odh$nsid left"; fi
  if [[ -n "$(command ip route show exact "10.244.$ORDINAL_DEVCLUSTER_IP_BLOCK.0/24")" ]]; then fail "host route left"; fi
fi

step "PASS (1 passed, 0 failed)"
