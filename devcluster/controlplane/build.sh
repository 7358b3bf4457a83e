#!/usr/bin/env bash
# Build kube-apiserver, kube-controller-manager, kube-proxy and etcd from the
# Go modules pinned in go.mod into a cache directory outside the repository,
# and install the Debian packages the netns network needs (iproute2, nftables).
#
#   devcluster/controlplane/build.sh            # build if missing or stale
#   ORDINAL_CACHE=/some/dir build.sh            # binaries go to /some/dir/bin
#   build.sh --force                            # rebuild anyway
#
# A stamp file records the pinned versions and a hash of go.mod/go.sum; when it
# matches and all binaries exist, nothing is rebuilt.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bin="${ORDINAL_CACHE:-$HOME/.cache/ordinal}/bin"
force=0
[[ "${1:-}" == "--force" ]] && force=1

k8s_version="$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ {print $2; exit}' "$here/go.mod")"
etcd_version="$(awk '$1 == "go.etcd.io/etcd/server/v3" && $2 ~ /^v/ {print $2; exit}' "$here/go.mod")"
sum="$(cat "$here/go.mod" "$here/go.sum" "$here/etcd/main.go" | sha256sum | cut -c1-16)"
stamp_want="kubernetes=$k8s_version etcd=$etcd_version go=$(go env GOVERSION) mods=$sum"
stamp="$bin/.controlplane-stamp"

# The netns network (README "Network") runs `ip` and `nft`; kube-proxy's
# nftables mode runs `nft` too.
need=()
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v nft >/dev/null 2>&1 || need+=(nftables)
if [[ ${#need[@]} -gt 0 ]]; then
  echo "==> installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1 || {
    apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  }
fi

targets=(kube-apiserver kube-controller-manager kube-proxy etcd)
all_there=1
for t in "${targets[@]}"; do [[ -x "$bin/$t" ]] || all_there=0; done
if [[ $force == 0 && $all_there == 1 && -f "$stamp" && "$(cat "$stamp")" == "$stamp_want" ]]; then
  echo "control plane up to date in $bin ($stamp_want)"
  exit 0
fi

mkdir -p "$bin"
rm -f "$stamp"
export GOFLAGS="-trimpath -buildvcs=false -mod=mod"
export CGO_ENABLED=0
cd "$here"
echo "==> downloading modules (kubernetes $k8s_version, etcd $etcd_version)"
go mod download
start=$(date +%s)
# Kubernetes reads its own version (and so its emulation/compatibility version)
# from these variables, which its Makefile normally sets.
minor="${k8s_version#v1.}"; minor="${minor%%.*}"
vpkg=k8s.io/component-base/version
k8s_ldflags="-X $vpkg.gitVersion=$k8s_version -X $vpkg.gitMajor=1 -X $vpkg.gitMinor=$minor -X $vpkg.gitTreeState=clean -X $vpkg.buildDate=1970-01-01T00:00:00Z"
build() { # name package [extra ldflags]
  local t0=$(date +%s)
  echo "==> building $1 from $2 ..."
  go build -ldflags="-s -w ${3:-}" -o "$bin/$1.tmp" "$2"
  mv "$bin/$1.tmp" "$bin/$1"
  echo "    $1 done in $(( $(date +%s) - t0 ))s"
}
build etcd ./etcd
build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$k8s_ldflags"
build kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager "$k8s_ldflags"
build kube-proxy k8s.io/kubernetes/cmd/kube-proxy "$k8s_ldflags"
echo "$stamp_want" > "$stamp"
echo "==> control plane built in $(( $(date +%s) - start ))s into $bin"
"$bin/etcd" --version | head -1
"$bin/kube-apiserver" --version
