#!/usr/bin/env bash
# Runs Azurite's Blob service, the Azure Storage emulator (npm), installing it
# first into the cache directory outside the repository. 3.35.0 is the last
# release that runs on Node 20.
# Usage: scripts/azurite.sh <azurite-blob args>   (--version: install only)
set -euo pipefail
VERSION="3.35.0"
cache="${ORDINAL_CACHE:-$HOME/.cache/ordinal}"
dir="$cache/azurite-$VERSION"
bin="$dir/node_modules/.bin/azurite-blob"
if [ ! -x "$bin" ]; then
  echo "installing azurite $VERSION from npm (once)..." >&2
  rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
  npm install --silent --no-audit --no-fund --prefix "$dir.tmp" "azurite@$VERSION" >&2
  rm -rf "$dir" && mv "$dir.tmp" "$dir"
fi
if [ "${1:-}" = "--version" ]; then
  exec "$bin" --version
fi
exec "$bin" "$@"
