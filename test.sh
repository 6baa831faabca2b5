#!/usr/bin/env bash
# Runs every podid test: formatting, lints, Rust unit and integration tests
# (SQLite and PostgreSQL), and the Python suites with the real aws CLI and
# boto3. Sets up what it needs first (scripts/setup.sh); run as root on a fresh
# machine so it can install packages and start PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")"
export PATH="$HOME/.cargo/bin:$PATH"

step() { printf '\n==> %s\n' "$*"; }

step "setup"
if [ "$(id -u)" = 0 ]; then
    PODID_TEST_POSTGRES_URL=$(scripts/setup.sh postgres)
    export PODID_TEST_POSTGRES_URL
else
    scripts/setup.sh
    if [ -z "${PODID_TEST_POSTGRES_URL:-}" ]; then
        echo "not root and PODID_TEST_POSTGRES_URL unset: PostgreSQL tests will be skipped"
    fi
fi

step "build (once; every later stage reuses it)"
cargo build --workspace --all-targets --locked

step "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

step "Rust tests"
cargo test --workspace --locked

step "Python tests (aws CLI, boto3)"
PODID_BIN="$PWD/target/debug/podid" .venv/bin/python -m pytest tests/python -q -p no:cacheprovider
