#!/usr/bin/env bash
# Runs every podid test: formatting, lints, Rust unit and integration tests
# (SQLite and PostgreSQL), and the Python suites with the real aws CLI and
# boto3. Sets up what it needs first (scripts/setup.sh); run as root on a fresh
# machine so it can install packages and start PostgreSQL.
#
# At the end it prints the pass, fail and skip counts of the Rust tests (cargo's
# "test result:" lines; ignored counts as skipped) and of pytest. Under CI=true
# a test that cannot run fails instead of skipping, and a skip counted here
# fails the run.
set -euo pipefail
cd "$(dirname "$0")"
export PATH="$HOME/.cargo/bin:$PATH"

step() { printf '\n==> %s\n' "$*"; }
in_ci() { case "${CI:-}" in "" | 0 | false) return 1 ;; *) return 0 ;; esac; }

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT

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
# The podid just built: the manifest test's flag cross-check and the Python suites use it.
export PODID_BIN="$PWD/target/debug/podid"

step "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

step "Rust tests"
rust_rc=0
cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$logs/rust.log" || rust_rc=$?

step "Python tests (aws CLI, boto3)"
py_rc=0
.venv/bin/python -m pytest tests/python -q -p no:cacheprovider \
    2>&1 | tee "$logs/python.log" || py_rc=$?

# cargo: "test result: ok. 5 passed; 0 failed; 1 ignored; …", one line per binary.
read -r rust_passed rust_failed rust_skipped < <(
    awk '/^test result:/ { for (i = 1; i <= NF; i++) {
            if ($(i + 1) ~ /^passed/) p += $i; if ($(i + 1) ~ /^failed/) f += $i
            if ($(i + 1) ~ /^ignored/) s += $i } }
         END { print p + 0, f + 0, s + 0 }' "$logs/rust.log")
# pytest -q: its last line, e.g. "300 passed, 2 skipped, 1 error in 95.2s".
py_count() {
    tail -n 1 "$logs/python.log" | awk -v words="^($1)$" '{
        for (i = 2; i <= NF; i++) { w = $i; sub(/,$/, "", w); if (w ~ words) n += $(i - 1) } }
        END { print n + 0 }'
}
py_passed=$(py_count 'passed')
py_failed=$(py_count 'failed|errors?')
py_skipped=$(py_count 'skipped')

step "counts"
echo "rust: $rust_passed passed, $rust_failed failed, $rust_skipped skipped"
echo "pytest: $py_passed passed, $py_failed failed, $py_skipped skipped"
skipped=$((rust_skipped + py_skipped))
status=0
if [ "$rust_rc" != 0 ] || [ "$py_rc" != 0 ]; then
    echo "FAILED: cargo test exited $rust_rc, pytest $py_rc"
    status=1
fi
if in_ci && [ "$skipped" != 0 ]; then
    echo "FAILED: CI=true and $skipped tests were skipped (a skip in CI is a failure)"
    status=1
fi
if [ "$((rust_passed + py_passed))" = 0 ]; then
    echo "FAILED: no test passed"
    status=1
fi
echo "total: $((rust_passed + py_passed)) passed, $((rust_failed + py_failed)) failed, $skipped skipped"
exit "$status"
