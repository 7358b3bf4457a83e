#!/usr/bin/env bash
# Builds the operator image without a container engine: the release binary,
# the glibc libraries it links (found with ldd), CA certificates, a passwd
# entry for the non-root user — nothing else, no shell — assembled into an OCI
# image with umoci and pushed with skopeo. Installs umoci and skopeo (Debian)
# when missing.
#
#   scripts/image.sh                         # build, write the OCI layout to target/oci
#   scripts/image.sh --oci DIR               # ... to DIR (ref: the version, e.g. DIR:0.1.0)
#   scripts/image.sh --push REGISTRY/REPO:TAG [--tls-verify=false]
#   scripts/image.sh --print-ref             # the reference the chart defaults to
#   scripts/image.sh --binary PATH           # use a built binary instead of cargo build
#   scripts/image.sh --build-only            # only build the binary, print its path
#
# Reproducible: the same source (binary) gives the same image digest — every
# file's time is SOURCE_DATE_EPOCH (default: the last commit's time), entries
# are sorted, owners are 0:0, and the config and history carry that time
# too. The digest is printed last.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

# The chart's default image is $REPOSITORY:<appVersion> (= the crate version).
REPOSITORY="ordinal/ordinal"
VERSION="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)"
UID_GID="65532:65532"

oci="" push="" binary="" tls_verify="true" build_only=0
while [ $# -gt 0 ]; do
  case "$1" in
    --oci) oci="$2"; shift 2 ;;
    --push) push="$2"; shift 2 ;;
    --binary) binary="$2"; shift 2 ;;
    --tls-verify=*) tls_verify="${1#*=}"; shift ;;
    --print-ref) echo "$REPOSITORY:$VERSION"; exit 0 ;;
    --build-only) build_only=1; shift ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "image.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

need=()
command -v umoci >/dev/null 2>&1 || need+=(umoci)
command -v skopeo >/dev/null 2>&1 || need+=(skopeo)
if [ "${#need[@]}" -gt 0 ]; then
  echo "installing ${need[*]} (Debian)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [ -z "$binary" ]; then
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
  # No build-machine paths in the binary, so another checkout, user or target
  # dir builds the same bytes (same toolchain and Cargo.lock). The sources are
  # copied to one fixed directory first, so RUSTFLAGS (part of every crate's
  # fingerprint) are the same for every clone and a warm target dir's release
  # dependencies are reused instead of rebuilt.
  cargo_home="${CARGO_HOME:-$HOME/.cargo}"
  src="$root"
  if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    src="${ORDINAL_IMAGE_SRC:-/var/tmp/ordinal-image-src}"
    rm -rf "$src"
    mkdir -p "$src"
    git ls-files -z --cached --others --exclude-standard \
      | tar --null --ignore-failed-read -T - -cf - 2>/dev/null | tar -xf - -C "$src"
  fi
  export RUSTFLAGS="${RUSTFLAGS:-} --remap-path-prefix=$src=/build/ordinal --remap-path-prefix=$cargo_home=/build/cargo --remap-path-prefix=$CARGO_TARGET_DIR=/build/target"
  (cd "$src" && cargo build --release --locked -p ordinal --bin ordinal >&2)
  binary="$CARGO_TARGET_DIR/release/ordinal"
fi
[ -x "$binary" ] || { echo "image.sh: no binary at $binary" >&2; exit 1; }
if [ "$build_only" = 1 ]; then echo "$binary"; exit 0; fi

if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
  SOURCE_DATE_EPOCH="$(git log -1 --format=%ct 2>/dev/null || echo 0)"
fi
created="$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)"
revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
  revision="$revision-dirty"
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
layout="$work/oci"
ref="$layout:$VERSION"
umoci init --layout "$layout"
umoci new --image "$ref"
umoci unpack --image "$ref" "$work/bundle" >/dev/null
rootfs="$work/bundle/rootfs"
mkdir -p "$rootfs/usr/local/bin" "$rootfs/etc/ssl/certs" "$rootfs/tmp" "$rootfs/home/nonroot"

install -m 0755 "$binary" "$rootfs/usr/local/bin/ordinal"
# Exactly the shared libraries the binary loads (the loader included), at the
# paths ldd resolves them to; symlinks are copied as the files they name.
libs="$( (ldd "$binary" || true) | awk '/=> \// { print $3 } /^\s*\/[^ ]+ \(/ { print $1 }' | sort -u)"
for lib in $libs; do
  mkdir -p "$rootfs$(dirname "$lib")"
  cp -L "$lib" "$rootfs$lib"
  chmod 0755 "$rootfs$lib"
done
# TLS to S3/GCS/Azure verifies against the system roots (rustls-native-certs).
cp -L /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$rootfs/etc/group"
printf 'hosts: files dns\n' >"$rootfs/etc/nsswitch.conf"
chown -R 0:0 "$rootfs"
chown 65532:65532 "$rootfs/home/nonroot"
find "$rootfs" -type d -exec chmod 0755 {} +
chmod 1777 "$rootfs/tmp"
find "$rootfs" -type f -not -perm -0100 -exec chmod 0644 {} +
find "$rootfs" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
history=(--history.created "$created" --history.author Ordinal --history.created_by "scripts/image.sh")
umoci repack --image "$ref" "${history[@]}" --history.comment "ordinal $VERSION" "$work/bundle"
labels=(
  "org.opencontainers.image.title=ordinal"
  "org.opencontainers.image.description=$(sed -n 's/^description = "\(.*\)"$/\1/p' Cargo.toml | head -1)"
  "org.opencontainers.image.version=$VERSION"
  "org.opencontainers.image.revision=$revision"
  "org.opencontainers.image.licenses=$(sed -n 's/^license = "\(.*\)"$/\1/p' Cargo.toml | head -1)"
  "org.opencontainers.image.created=$created"
)
args=()
for l in "${labels[@]}"; do args+=(--config.label "$l" --manifest.annotation "$l"); done
umoci config --image "$ref" "${history[@]}" --history.comment "config" \
  --created "$created" --author "Ordinal" --architecture amd64 --os linux \
  --config.user "$UID_GID" --config.workingdir /home/nonroot \
  --config.env "PATH=/usr/local/bin:/usr/bin:/bin" \
  --config.env "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt" \
  --config.entrypoint /usr/local/bin/ordinal \
  "${args[@]}"
umoci gc --layout "$layout"
# One image per layout, named by the version.
find "$layout" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

digest="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"])' "$layout/index.json")"

out="${oci:-$root/target/oci}"
if [ -z "$push" ] || [ -n "$oci" ]; then
  rm -rf "$out"
  mkdir -p "$(dirname "$out")"
  cp -a "$layout" "$out"
  echo "OCI layout: $out:$VERSION ($REPOSITORY:$VERSION)" >&2
fi
if [ -n "$push" ]; then
  skopeo copy --quiet --dest-tls-verify="$tls_verify" "oci:$layout:$VERSION" "docker://$push" >&2
  echo "pushed: $push" >&2
fi
echo "$digest"
