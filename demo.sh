#!/usr/bin/env bash
# podid's first command: the seed article's scenario, end to end, with every
# real part — AWS (moto, IAM enforced), `podid server` on embedded SQLite, a
# node per cluster running `podid agent`, `podid webhook` over TLS, the real
# aws CLI, and the article's boto3 code as the pod — then a second cluster
# using the same role with its trust policy untouched.
#
#   ./demo.sh                  as root: network namespaces and the real 169.254.170.23;
#                              otherwise: loopback addresses (it says so)
#   ./demo.sh --mode loopback  loopback even as root
#   ./demo.sh --keep           keep the work directory (logs, SQLite database)
#
# It installs what is missing (scripts/setup.sh demo: the Python venv with the
# pinned moto, boto3 and aws CLI), builds podid, and plays the scenario
# (scripts/demo.py, which runs tests/python/article.py — the same code as the
# end-to-end test). Everything it starts is stopped and removed at the end,
# also on failure and on Ctrl-C; on failure the last line names the step.
set -euo pipefail
cd "$(dirname "$0")"
export PATH="$HOME/.cargo/bin:$PATH"

if [ -t 1 ]; then B=$'\033[1m' R=$'\033[31m' N=$'\033[0m'; else B='' R='' N=''; fi
STEP=""
on_exit() {
    local rc=$?
    if [ "$rc" = 130 ]; then
        printf '\n%sdemo interrupted during %s, before the scenario started: nothing to clean up%s\n' "$R" "$STEP" "$N" >&2
    elif [ "$rc" != 0 ]; then
        printf '\n%sdemo failed at %s (exit %s)%s\n' "$R" "$STEP" "$rc" "$N" >&2
    fi
}
trap on_exit EXIT
trap 'exit 130' INT TERM

STEP="set-up 1/2: scripts/setup.sh demo"
printf '%s==> [%s] Python venv with the pinned moto, boto3 and aws CLI%s\n' "$B" "$STEP" "$N"
scripts/setup.sh demo

STEP="set-up 2/2: cargo build -p podid -p podid-agent-cli"
printf '\n%s==> [%s] build podid%s\n' "$B" "$STEP" "$N"
cargo build --quiet --locked -p podid -p podid-agent-cli

# From here on the player reports (and cleans up) by itself.
trap - EXIT INT TERM
exec .venv/bin/python scripts/demo.py "$@"
