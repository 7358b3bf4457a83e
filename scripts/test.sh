#!/usr/bin/env bash
# The test suite in one command on a fresh Debian machine (as root): installs
# what the tests need (scripts/setup.sh), then runs
# `cargo test --workspace --locked` with any arguments passed on, e.g.
#   scripts/test.sh                  # everything (about 45 min once the caches are warm)
#   scripts/test.sh --test chart     # one suite
# On a prepared machine `cargo test --workspace --locked` alone does the same.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec cargo test --workspace --locked "$@"
