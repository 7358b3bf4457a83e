#!/usr/bin/env bash
# Chaos runs of both engines (see tests/chaos.rs and RELIABILITY.md):
# primary SIGKILLs, SIGSTOP hangs and kills of the member just promoted,
# under a write load, with the operator killed in a quarter of the rounds.
#
#   scripts/chaos.sh                 # 10 rounds per engine and mode
#   ORDINAL_CHAOS_ROUNDS=50 ORDINAL_CHAOS_ENGINE=redis ORDINAL_CHAOS_MODE=durable scripts/chaos.sh
#   ORDINAL_CHAOS_SEED=<seed> ORDINAL_CHAOS_ROUNDS=1 ... scripts/chaos.sh   # replay one round
#
# Environment: ORDINAL_CHAOS_ROUNDS (default 10), ORDINAL_CHAOS_ENGINE
# (redis|mariadb|all), ORDINAL_CHAOS_MODE (durable|async|all),
# ORDINAL_CHAOS_SEED, ORDINAL_CHAOS_RATE (target writes/s, default 4000),
# ORDINAL_CHAOS_REPORT (file the per-round table and summaries are
# appended to; default chaos-report.md in the current directory).
# Needs redis-server and mariadbd (scripts/setup.sh installs them) and root
# (the run happens in a private network namespace: all traffic on loopback).
set -euo pipefail
cd "$(dirname "$0")/.."
export ORDINAL_CHAOS_REPORT="${ORDINAL_CHAOS_REPORT:-$PWD/chaos-report.md}"
cargo test --locked --test chaos --no-run
exec unshare -n bash -c 'ip link set lo up && exec cargo test --offline --locked --test chaos -- --ignored --nocapture --test-threads 1 chaos_runs'
