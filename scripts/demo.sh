#!/usr/bin/env bash
# The Ordinal demo on one machine: a real Kubernetes control plane (built from
# the Kubernetes Go modules), the operator, and an example Redis and MariaDB
# cluster replicating. Usage: scripts/demo.sh [up|down]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
state="${ORDINAL_DEVCLUSTER_DIR:-${ORDINAL_CACHE:-$HOME/.cache/ordinal}/devcluster}"
export KUBECONFIG="$state/kubeconfig"
bin="$CARGO_TARGET_DIR/debug"
ns=demo
step() { printf '\n== %s\n' "$*"; }

if [ "${1:-up}" = "down" ]; then
  [ -f "$state/operator.pid" ] && kill "$(cat "$state/operator.pid")" 2>/dev/null || true
  rm -f "$state/operator.pid"
  "$bin/devcluster" down
  exit 0
fi

if [ "$(id -u)" != 0 ]; then
  echo "the devcluster runs pods as host processes in mount namespaces: run as root" >&2
  exit 1
fi

step "Debian packages (redis-server, mariadb-server)"
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
[ -x /usr/sbin/mariadbd ] || need+=(mariadb-server)
command -v mariadb >/dev/null 2>&1 || need+=(mariadb-client)
if [ "${#need[@]}" -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

step "MySQL 8.0.31 for flavor: MySQL clusters (mysql:8* images), installed once from Maven Central"
scripts/mysql8.sh

step "building ordinal and devcluster (first build takes a few minutes)"
cargo build --workspace --locked

step "starting the devcluster (first start builds kube-apiserver, controller-manager and etcd: ~5 min)"
ORDINAL_BIN="$bin/ordinal" "$bin/devcluster" up
kubectl get nodes

step "installing the CRDs"
kubectl apply --server-side -f crds/ >/dev/null
kubectl wait --for=condition=Established crd --all --timeout=60s >/dev/null

step "starting the operator (log: $state/logs/operator.log)"
if [ -f "$state/operator.pid" ] && kill -0 "$(cat "$state/operator.pid")" 2>/dev/null; then
  echo "already running (pid $(cat "$state/operator.pid"))"
else
  nohup "$bin/devcluster" run -- "$bin/ordinal" run --http-addr 127.0.0.1:18080 \
    >"$state/logs/operator.log" 2>&1 &
  echo $! >"$state/operator.pid"
fi

step "applying examples/redis-replication.yaml and examples/mysql-cluster.yaml in namespace $ns"
kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl -n "$ns" apply -f examples/redis-replication.yaml -f examples/mysql-cluster.yaml

step "waiting until both clusters are Ready (MariaDB initialises its data directories first)"
kubectl -n "$ns" wait --for=condition=Ready redisreplication/redis-demo --timeout=300s
kubectl -n "$ns" wait --for=condition=Ready mysqlcluster/mysql-demo --timeout=600s
kubectl -n "$ns" get ordinal
kubectl -n "$ns" get pods,svc,pvc -L ordinal.dev/role

pod_ip() { kubectl -n "$ns" get pod "$1" -o jsonpath='{.status.podIP}'; }
role_pod() { kubectl -n "$ns" get pods -l "app.kubernetes.io/instance=$1,ordinal.dev/role=$2" -o jsonpath='{.items[0].metadata.name}'; }

step "Redis: write to the primary, read from a replica"
export REDISCLI_AUTH="$(kubectl -n "$ns" get secret redis-demo-auth -o jsonpath='{.data.password}' | base64 -d)"
primary=$(role_pod redis-demo primary); replica=$(role_pod redis-demo replica)
value="hello from $(date +%T)"
redis-cli -h "$(pod_ip "$primary")" set demo:greeting "$value" >/dev/null
sleep 1
echo "$primary (primary) <- SET demo:greeting \"$value\""
echo "$replica (replica) -> $(redis-cli -h "$(pod_ip "$replica")" get demo:greeting)"

if grep -q '"netns"' "$state/network.json" 2>/dev/null; then
  step "Services: EndpointSlices hold the pods, the write Service's ClusterIP reaches the primary"
  kubectl -n "$ns" get endpointslices -l kubernetes.io/service-name=redis-demo-primary
  cip=$(kubectl -n "$ns" get svc redis-demo-primary -o jsonpath='{.spec.clusterIP}')
  for _ in $(seq 30); do
    "$bin/devcluster" run -- redis-cli -h "$cip" info replication 2>/dev/null | grep -q role:master && break
    sleep 1
  done
  echo "devcluster run -- redis-cli -h $cip (redis-demo-primary) info replication:"
  "$bin/devcluster" run -- redis-cli -h "$cip" info replication | grep -E '^(role|connected_slaves):'
fi

step "MariaDB: write to the primary, read from a replica"
export MYSQL_PWD="$(kubectl -n "$ns" get secret mysql-demo-auth -o jsonpath='{.data.root-password}' | base64 -d)"
primary=$(role_pod mysql-demo primary); replica=$(role_pod mysql-demo replica)
mariadb -uroot -h "$(pod_ip "$primary")" -e "CREATE DATABASE IF NOT EXISTS demo; CREATE TABLE IF NOT EXISTS demo.greetings (id INT AUTO_INCREMENT PRIMARY KEY, said VARCHAR(64)); INSERT INTO demo.greetings (said) VALUES ('$value')"
sleep 1
echo "$primary (primary) <- INSERT '$value'"
echo "$replica (replica) -> $(mariadb -uroot -h "$(pod_ip "$replica")" -N -e "SELECT said FROM demo.greetings ORDER BY id DESC LIMIT 1")"

cat <<TXT

The demo is running. Try:
  export KUBECONFIG=$KUBECONFIG
  kubectl -n $ns get ordinal
  kubectl -n $ns patch rr redis-demo --type merge -p '{"spec":{"primary":2}}'   # switchover
  kubectl -n $ns describe rr redis-demo                                       # events
Stop everything with: scripts/demo.sh down
TXT
