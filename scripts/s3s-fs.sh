#!/usr/bin/env bash
# Runs s3s-fs, a real S3-compatible server over a directory (crates.io),
# installing it first into the cache directory outside the repository.
# Usage: scripts/s3s-fs.sh <s3s-fs args>
set -euo pipefail
VERSION="0.14.1"
cache="${ORDINAL_CACHE:-$HOME/.cache/ordinal}"
bin="$cache/s3s-fs-$VERSION/bin/s3s-fs"
if [ ! -x "$bin" ]; then
  echo "installing s3s-fs $VERSION from crates.io (once)..." >&2
  cargo install "s3s-fs@$VERSION" --features binary --locked --root "$cache/s3s-fs-$VERSION" >&2
fi
exec "$bin" "$@"
