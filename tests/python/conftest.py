"""Fixtures of podid's Python end-to-end suite.

Every test module gets its own `podid server` process with a fresh SQLite
database (module scope); tests inside a module keep apart by using clusters
with unique names. Tests that must see a pristine server use `fresh_podid`.
The server is stopped with SIGTERM at the end and must exit with status 0.

The suite's rule for tests that cannot run here: with `CI` set (to anything
but empty, `0` or `false`) a skip — a skip mark, `pytest.skip()` in a test or a
fixture, a skipped module — is turned into a failure carrying its reason, so
nothing can silently not run in CI. Every test is bounded by pytest-timeout
(pytest.ini).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from podid_helpers import (
    Podid,
    ServerProcess,
    aws_cli_bin,
    cli_env,
    make_keys,
    podid_bin,
    write_keys_file,
)


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false")


def _skip_reason(longrepr) -> str:
    """The reason of a skip report (pytest keeps it as (path, line, "Skipped: …"))."""
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def _fail_skip_in_ci(report) -> None:
    if report.skipped and in_ci() and not hasattr(report, "wasxfail"):
        reason = _skip_reason(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"CI=true: a test that cannot run here fails instead of skipping: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A skipped test (mark or pytest.skip in setup or call) fails under CI."""
    outcome = yield
    _fail_skip_in_ci(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """A module that skips itself at collection fails under CI."""
    outcome = yield
    _fail_skip_in_ci(outcome.get_result())


@pytest.fixture(scope="session", autouse=True)
def isolated_aws_environment(tmp_path_factory):
    """No user AWS configuration, profile, proxy or credentials reach boto3."""
    home = tmp_path_factory.mktemp("aws-home")
    mp = pytest.MonkeyPatch()
    for name in list(os.environ):
        if name.startswith("AWS_") or name.startswith("BOTO"):
            mp.delenv(name)
    mp.setenv("AWS_CONFIG_FILE", str(home / "config"))
    mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "credentials"))
    mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
    mp.setenv("NO_PROXY", "127.0.0.1,localhost")
    mp.setenv("no_proxy", "127.0.0.1,localhost")
    yield
    mp.undo()


@pytest.fixture(scope="session")
def api_keys():
    """admin / reader / node keys with random secrets."""
    return make_keys()


@pytest.fixture(scope="session")
def keys_file(tmp_path_factory, api_keys):
    return write_keys_file(tmp_path_factory.mktemp("keys") / "keys.toml", api_keys.values())


def _start(workdir: Path, keys_file: Path, api_keys) -> tuple[ServerProcess, Podid]:
    server = ServerProcess(workdir, keys_file).start()
    return server, Podid(server, api_keys)


def _stop(server: ServerProcess) -> None:
    rc = server.stop()
    assert rc == 0, f"podid server exited with {rc} on SIGTERM:\n{server.log_tail()}"


@pytest.fixture(scope="module")
def podid(tmp_path_factory, keys_file, api_keys):
    """A server shared by the tests of one module (fresh SQLite per module)."""
    server, api = _start(tmp_path_factory.mktemp("server"), keys_file, api_keys)
    yield api
    _stop(server)


@pytest.fixture
def fresh_podid(tmp_path_factory, keys_file, api_keys):
    """A server of the test's own, for tests that need an empty store."""
    server, api = _start(tmp_path_factory.mktemp("fresh-server"), keys_file, api_keys)
    yield api
    _stop(server)


@pytest.fixture(autouse=True)
def server_must_not_panic(request):
    """Fails the test during whose run a server it used logged a panic (a
    panicking handler answers nothing: the client just sees the connection
    close)."""
    servers = [
        request.getfixturevalue(name).server
        for name in ("podid", "fresh_podid")
        if name in request.fixturenames
    ]
    offsets = {id(s): s.log_path.stat().st_size for s in servers}
    yield
    for s in servers:
        with open(s.log_path, "rb") as f:
            f.seek(offsets[id(s)])
            new = f.read().decode(errors="replace")
        panics = [line for line in new.splitlines() if "panicked at" in line]
        if panics:
            pytest.fail(f"the podid server panicked during this test: {panics[0].strip()}", pytrace=False)


@pytest.fixture(scope="module")
def eks(podid):
    """boto3 `eks` client signed with the admin key (no retries)."""
    return podid.client("admin")


@pytest.fixture(scope="module")
def eks_reader(podid):
    return podid.client("reader")


@pytest.fixture(scope="module")
def eks_node(podid):
    return podid.client("node")


@pytest.fixture
def cluster(podid):
    """A freshly registered cluster (inline JWKS); its name."""
    return podid.new_cluster()


@pytest.fixture
def aws_cli(podid, tmp_path, api_keys):
    """Runs the aws CLI v1 against the server: aws_cli('eks', 'list-…', …).

    Returns (returncode, parsed JSON or None, stderr)."""

    def run(*args: str, role: str = "admin", expect_json: bool = True):
        cmd = [
            str(aws_cli_bin()),
            *args,
            "--endpoint-url",
            podid.endpoint,
            "--output",
            "json",
        ]
        proc = subprocess.run(
            cmd,
            env=cli_env(tmp_path / "aws-cli-home", api_keys[role]),
            capture_output=True,
            text=True,
            timeout=60,
        )
        out = None
        if proc.returncode == 0 and expect_json and proc.stdout.strip():
            out = json.loads(proc.stdout)
        return proc.returncode, out, proc.stderr

    return run


@pytest.fixture
def podid_cli(podid, tmp_path, api_keys):
    """Runs the podid CLI against the server; returns the CompletedProcess.

    role=None runs without any credentials."""

    def run(*args: str, role: str | None = "admin", endpoint: bool = True):
        proc = subprocess.run(
            [str(podid_bin()), *args],
            env=cli_env(
                tmp_path / "podid-cli-home",
                api_keys[role] if role else None,
                podid.endpoint if endpoint else None,
            ),
            capture_output=True,
            text=True,
            timeout=60,
        )
        return proc

    return run
