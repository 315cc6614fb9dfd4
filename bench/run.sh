#!/usr/bin/env bash
# Runs every benchmark in release mode and rewrites BENCHMARKS.md with the table.
#   bench/run.sh                     every figure (about an hour here), BENCHMARKS.md and bench/scale.svg
#   bench/run.sh --only large,small  some of them, printed only (large memory small
#                                    review storage replication search scale
#                                    quorum resumable)
#   bench/run.sh --tiny              one small round, to check the harness (printed only)
# Needs Debian's `age` (apt-get install age), and Garage and curl for the replication
# figures (tests/run-all.sh installs them). Run on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v age >/dev/null || { echo "bench/run.sh needs Debian's age: apt-get install age" >&2; exit 1; }
cargo bench --locked --bench amanat -- --markdown BENCHMARKS.md "$@"
