#!/usr/bin/env bash
# Runs helm, building it first from its Go module (no binary download) into
# the cache directory outside the repository. Usage: scripts/helm.sh <helm args>
set -euo pipefail
HELM_VERSION="v3.22.0"
cache="${ORDINAL_CACHE:-$HOME/.cache/ordinal}/bin"
helm="$cache/helm-$HELM_VERSION"
if [ ! -x "$helm" ]; then
  echo "building helm $HELM_VERSION from the Go module proxy (once)..." >&2
  mkdir -p "$cache"
  tmp=$(mktemp -d)
  GOFLAGS=-trimpath GOBIN="$tmp" go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
  mv "$tmp/helm" "$helm"
  rm -rf "$tmp"
fi
exec "$helm" "$@"
