#!/usr/bin/env bash
# The whole test suite on a fresh Debian machine: installs what the tests need (the
# stock `age` tool, Chromium and its WebDriver, tor and systemd-analyze to check the
# deploy/ files, curl to tamper with a replica, microsocks to reach one through SOCKS
# as through Tor, exiftool to write and read photos' metadata, npm to check the vendored
# tus-js-client, valgrind's callgrind to count the server's instructions in the
# benchmarks; tuspy, a tus client, and schemathesis and openapi-spec-validator, which
# hold the API to its contract, from PyPI; Garage, the partners' object store, and
# cargo-deny and cargo-fuzz are built from the crates registry), then
# checks formatting, lints and the dependency tree, runs every test, runs one tiny round
# of the benchmarks, and fuzzes each reader for ten seconds. Run as root: it installs
# packages, some tests mount a small tmpfs to fill a disk, and one starts the server as
# another user.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    exec sudo --preserve-env=PATH,CARGO_HOME,RUSTUP_HOME "$0" "$@"
fi

need=()
command -v age >/dev/null || need+=(age)
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
command -v python3 >/dev/null || need+=(python3)
command -v openssl >/dev/null || need+=(openssl)
command -v tor >/dev/null || need+=(tor)
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v curl >/dev/null || need+=(curl)
command -v microsocks >/dev/null || need+=(microsocks)
command -v exiftool >/dev/null || need+=(libimage-exiftool-perl)
command -v npm >/dev/null || need+=(npm)
command -v callgrind_control >/dev/null || need+=(valgrind)
if [ ${#need[@]} -gt 0 ]; then
    echo "installing: ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# Garage, the S3-compatible store the replica tests start (one node and a cluster of
# three). Built once, lightly optimised to keep a cold run short (it only serves
# loopback tests here), its build cached where a second run reuses it.
if ! command -v garage >/dev/null; then
    CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
        CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_OPT_LEVEL=1 \
        CARGO_TARGET_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/amanat-garage-build" \
        cargo install garage --version 2.5.0 --locked --no-default-features \
        --features bundled-libs,sqlite
fi
# tuspy, a tus client not written here, for the resumable-upload tests: pinned in
# tests/requirements-tus.txt, in a virtual environment cached for the next run.
tus_env="${XDG_CACHE_HOME:-$HOME/.cache}/amanat-py"
if ! "$tus_env/bin/python" -c 'import tusclient' 2>/dev/null; then
    python3 -m venv "$tus_env" 2>/dev/null || {
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
        python3 -m venv "$tus_env"
    }
    "$tus_env/bin/pip" install -q -r tests/requirements-tus.txt
fi
export AMANAT_TUS_PYTHON="$tus_env/bin/python"
# schemathesis and openapi-spec-validator, which hold the API to docs/openapi.yaml:
# pinned in tests/requirements-contract.txt, in their own cached virtual environment.
contract_env="${XDG_CACHE_HOME:-$HOME/.cache}/amanat-contract"
if ! cmp -s tests/requirements-contract.txt "$contract_env/requirements.txt"; then
    rm -rf "$contract_env"
    python3 -m venv "$contract_env"
    "$contract_env/bin/pip" install -q -r tests/requirements-contract.txt
    cp tests/requirements-contract.txt "$contract_env/requirements.txt"
fi
export AMANAT_CONTRACT_VENV="$contract_env"
# The form's vendored tus-js-client is the locked package's own file, byte for byte.
vendored=$(mktemp -d)
cp vendor/tus-js-client/package.json vendor/tus-js-client/package-lock.json "$vendored/"
(cd "$vendored" && npm ci --ignore-scripts --no-audit --no-fund --silent)
cmp "$vendored/node_modules/tus-js-client/dist/tus.min.js" src/intake/static/tus.min.js
rm -rf "$vendored"
# The replica tests skip without Garage elsewhere; here its absence is a failure.
export AMANAT_REQUIRE_GARAGE=1
# The same for exiftool, the outside reader of what a photo says about itself.
export AMANAT_REQUIRE_EXIFTOOL=1

cargo fmt --all -- --check
cargo clippy --release --all-targets --locked -- -D warnings
tests/supply-chain.sh
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --release --locked --no-fail-fast
else
    cargo test --release --locked --no-fail-fast
fi
# The benchmark harness still builds and runs (one tiny round; its timings are not judged).
cargo bench --locked --bench amanat -- --tiny >/dev/null
tests/fuzz.sh
