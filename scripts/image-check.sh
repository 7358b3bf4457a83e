#!/usr/bin/env bash
# CI check of the operator image (scripts/image.sh), without a container
# engine: builds the image twice and requires the same digest, requires the
# chart's default image to be the one the script names, starts a local
# registry (Debian's docker-registry) on 127.0.0.1 inside a private network
# namespace, pushes the image, pulls it back with skopeo, unpacks it with
# umoci and runs the image's entrypoint from the unpacked root filesystem
# (chroot, as the image's user): `--version`, `crd` (must equal crds/), and
# the `backup`/`restore` subcommands the Jobs run. Run as root.
# ORDINAL_BINARY=PATH checks an image of that binary instead of building the
# release binary.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

if [ "${1:-}" != "--in-netns" ]; then
  # Tools from Debian, installed here: the network namespace below has no network.
  need=()
  for t in umoci skopeo docker-registry jq curl; do
    command -v "$t" >/dev/null 2>&1 || need+=("$t")
  done
  if [ "${#need[@]}" -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
  scripts/helm.sh version >/dev/null
  if [ -n "${ORDINAL_BINARY:-}" ]; then
    echo "-- using the binary $ORDINAL_BINARY (ORDINAL_BINARY)" >&2
  else
    echo "-- release build (scripts/image.sh --build-only)" >&2
    ORDINAL_BINARY="$(scripts/image.sh --build-only)"
  fi
  export ORDINAL_BINARY
  # The registry and every request to it stay inside a private network namespace.
  exec unshare -n "$0" --in-netns
fi
ip link set lo up

fail() { echo "image-check: FAIL: $*" >&2; exit 1; }
work="$(mktemp -d)"
registry_pid=""
# Stops the registry and removes the work dir; the script's own exit status
# stands (the registry's status after SIGTERM, 143, must not replace it).
cleanup() {
  local rc=$?
  if [ -n "$registry_pid" ]; then
    kill "$registry_pid" 2>/dev/null || true
    wait "$registry_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT

echo "-- two image builds give one digest" >&2
d1="$(scripts/image.sh --binary "$ORDINAL_BINARY" --oci "$work/a" 2>/dev/null)"
d2="$(scripts/image.sh --binary "$ORDINAL_BINARY" --oci "$work/b" 2>/dev/null)"
[ "$d1" = "$d2" ] || fail "digests differ: $d1 vs $d2"
echo "   $d1" >&2

echo "-- the chart's default image is the one image.sh names" >&2
ref="$(scripts/image.sh --print-ref)"
chart_image="$(scripts/helm.sh template ordinal charts/ordinal --skip-tests | sed -n 's/^ *image: "\(.*\)"$/\1/p' | sort -u)"
[ "$chart_image" = "$ref" ] || fail "chart image '$chart_image' != image.sh '$ref'"
app_version="$(sed -n 's/^appVersion: "\(.*\)"$/\1/p' charts/ordinal/Chart.yaml)"
[ "$ref" = "ordinal/ordinal:$app_version" ] || fail "Chart appVersion $app_version vs $ref"
echo "   $ref" >&2

echo "-- push to a registry on 127.0.0.1, pull back" >&2
cat >"$work/registry.yml" <<EOF
version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: $work/registry}
http: {addr: "127.0.0.1:5000"}
EOF
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 100); do
  curl -fsS http://127.0.0.1:5000/v2/ >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS http://127.0.0.1:5000/v2/ >/dev/null || { cat "$work/registry.log" >&2; fail "registry did not start"; }
remote="127.0.0.1:5000/$ref"
pushed="$(scripts/image.sh --binary "$ORDINAL_BINARY" --push "$remote" --tls-verify=false 2>/dev/null)"
[ "$pushed" = "$d1" ] || fail "pushed digest $pushed != $d1"
remote_digest="$(skopeo inspect --tls-verify=false "docker://$remote" | jq -r .Digest)"
[ "$remote_digest" = "$d1" ] || fail "registry serves $remote_digest, built $d1"
skopeo copy --quiet --src-tls-verify=false "docker://$remote" "oci:$work/pulled:pulled"
umoci unpack --image "$work/pulled:pulled" "$work/bundle" >/dev/null
rootfs="$work/bundle/rootfs"
echo "   $remote = $remote_digest" >&2

echo "-- run the image's entrypoint from the unpacked root filesystem" >&2
spec="$work/bundle/config.json"
user="$(jq -r '"\(.process.user.uid):\(.process.user.gid)"' "$spec")"
[ "$user" = "65532:65532" ] || fail "image user is $user, want 65532:65532"
mapfile -t entry < <(jq -r '.process.args[]' "$spec")
mapfile -t envs < <(jq -r '.process.env[]' "$spec")
[ ! -e "$rootfs/bin/sh" ] && [ ! -e "$rootfs/usr/bin/sh" ] || fail "the image has a shell"
# Only the operator: the kubectl plugin (a second binary of the crate) stays out.
[ "$(ls "$rootfs/usr/local/bin")" = "ordinal" ] || fail "usr/local/bin holds $(ls "$rootfs/usr/local/bin" | tr '\n' ' ')"
chroot_bin="$(command -v chroot)"
# The image's environment only (its PATH finds `ordinal`), as its user.
run() { env -i "${envs[@]}" "$chroot_bin" --userspec="$user" "$rootfs" "$@"; }
version="$(run "${entry[@]}" --version)"
[ "$version" = "ordinal $(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)" ] || fail "--version printed '$version'"
run "${entry[@]}" crd >"$work/crd.yaml"
cmp -s "$work/crd.yaml" crds/ordinal.dev.yaml || fail "'ordinal crd' from the image differs from crds/"
# `ordinal` on the image's PATH, and the subcommands backup/restore Jobs run.
run ordinal backup --help | grep -q verify || fail "ordinal backup verify missing"
run ordinal restore --help >/dev/null || fail "ordinal restore missing"
echo "   $version; crd output equals crds/ordinal.dev.yaml; files: $(cd "$rootfs" && find . -type f | sort | tr '\n' ' ')" >&2
echo "image-check: ok"
