#!/usr/bin/env bash
# Installs what podid's build, demo and tests need on a fresh Debian machine.
# Idempotent: a second run changes nothing. System packages need root; without
# root it says what is missing and stops.
#
#   scripts/setup.sh            system packages + the Python venv (.venv) + tests/js (npm)
#   scripts/setup.sh postgres   also start PostgreSQL for the tests and print its URL
#   scripts/setup.sh demo       only what ./demo.sh needs: system packages + the Python venv
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*" >&2; }

missing=()
command -v cc >/dev/null || missing+=(build-essential)
# iproute2: the node tests' network namespaces (root); the demo without root
# runs on loopback addresses and does not need it.
if ! command -v ip >/dev/null && ! { [ "${1:-}" = demo ] && [ "$(id -u)" != 0 ]; }; then
    missing+=(iproute2)
fi
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
if [ "${1:-}" != demo ]; then
    # wrk: the agent hot-path benchmark's smoke test; curl: the node suite's
    # plain-HTTP pod. Installed as root (CI, where a test without its tool
    # fails); without root their tests skip, saying so.
    for tool in wrk curl; do
        if ! command -v "$tool" >/dev/null; then
            if [ "$(id -u)" = 0 ]; then
                missing+=("$tool")
            else
                log "$tool is missing: its tests will skip (as root: apt-get install $tool)"
            fi
        fi
    done
    # Debian's Chromium and its WebDriver: the console's browser tests
    # (tests/python/test_console.py, Selenium, headless).
    for pair in chromium:chromium chromium-driver:chromedriver; do
        if ! command -v "${pair#*:}" >/dev/null; then
            if [ "$(id -u)" = 0 ]; then
                missing+=("${pair%%:*}")
            else
                log "${pair#*:} is missing: the console's browser tests will skip (as root: apt-get install ${pair%%:*})"
            fi
        fi
    done
fi
if [ "${1:-}" = postgres ] && ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    missing+=(postgresql)
fi
if ((${#missing[@]})); then
    if [ "$(id -u)" != 0 ]; then
        log "missing packages: ${missing[*]}; install them (as root: apt-get install ${missing[*]}) and run again"
        exit 1
    fi
    log "installing ${missing[*]}"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
fi

# kubectl (with kustomize v5) renders deploy/ in the manifest test; it comes
# with this machine image (Debian's kubernetes-client is too old for it).
if [ "${1:-}" != demo ] && ! command -v kubectl >/dev/null; then
    log "kubectl is missing: the manifest test needs kubectl >= 1.27 (kustomize v5)"
fi

if ! command -v cargo >/dev/null; then
    log "cargo is missing: install the Rust toolchain (rustup) first"
    exit 1
fi

# The Python venv with pinned clients (boto3, aws CLI) and moto.
if [ ! -x .venv/bin/python ] || ! cmp -s tests/python/requirements.txt .venv/.requirements.txt; then
    log "creating .venv with tests/python/requirements.txt"
    python3 -m venv .venv
    .venv/bin/pip install -q --disable-pip-version-check -r tests/python/requirements.txt >&2
    cp tests/python/requirements.txt .venv/.requirements.txt
fi

if [ "${1:-}" = demo ]; then
    exit 0
fi

# The AWS SDK for JavaScript v3, pinned by tests/js/package-lock.json.
if ! command -v npm >/dev/null; then
    log "npm is missing: install Node.js 20 (Debian: apt-get install nodejs npm)"
    exit 1
fi
if ! cmp -s tests/js/package-lock.json tests/js/node_modules/.podid-lock.json 2>/dev/null; then
    log "installing tests/js (npm ci)"
    (cd tests/js && npm ci --no-audit --no-fund --silent >&2)
    cp tests/js/package-lock.json tests/js/node_modules/.podid-lock.json
fi

if [ "${1:-}" = postgres ]; then
    bash crates/podid-store/tests/setup-postgres.sh
fi
