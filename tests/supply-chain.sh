#!/usr/bin/env bash
# The dependency tree against deny.toml: licenses, banned and duplicate crates, sources.
# Advisories need the RustSec database, fetched over the network; on a machine that
# cannot fetch it this says so loudly instead of pretending the check ran. Run
# `cargo deny check advisories` on a networked machine before every release.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo-deny >/dev/null || cargo install cargo-deny --locked --version 0.20.2

cargo deny --log-level error check licenses bans sources

set +e
advisories=$(cargo deny check advisories 2>&1)
status=$?
set -e
if [ $status -eq 0 ]; then
    echo "advisories ok"
elif grep -q "failed to fetch advisory database" <<<"$advisories"; then
    echo "ADVISORIES NOT CHECKED: the RustSec advisory database could not be fetched" \
         "from this machine. Check them on a networked machine before a release."
else
    echo "$advisories"
    exit 1
fi
