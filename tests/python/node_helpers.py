"""Helpers of the node-level end-to-end tests (test_node.py).

A "node" is a network namespace of its own (`ip netns add`), so the agent can
own 169.254.170.23 and fd00:ec2::23 without touching the host. Every process
of the node runs inside it through `ip netns exec NS …`: moto, the podid
server, the agent, the podid CLI and the pods' SDK programs.

The test process itself stays in the host's namespace; the HTTP calls it makes
(boto3 `eks`, raw requests to the agent, metrics scrapes) run on one worker
thread that has joined the node's network namespace with setns(2) (network
namespaces are per thread on Linux). `NetNs.call(fn)` runs `fn` there; any
socket `fn` opens lives in the node.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from podid_helpers import REGION, ApiKey, Lines, ServerProcess, agent_bin, podid_bin, stop_child

CLONE_NEWNET = 0x40000000
AGENT_V4 = "169.254.170.23"
AGENT_V6 = "fd00:ec2::23"


def netns_supported() -> str | None:
    """Why node tests cannot run here (None when they can)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2 (`ip`) is not installed"
    return None


# --------------------------------------------------------------------------
# the namespace


def _setns(path: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({path}): {os.strerror(err)}")
    finally:
        os.close(fd)


class NetNs:
    """A named network namespace with `lo` up."""

    def __init__(self, name: str):
        self.name = name
        self.prefix = [shutil.which("ip") or "ip", "netns", "exec", name]
        self._pool: ThreadPoolExecutor | None = None

    def create(self) -> "NetNs":
        # A namespace left over by a crashed run with the same pid.
        subprocess.run(["ip", "netns", "delete", self.name], capture_output=True)
        _check(subprocess.run(["ip", "netns", "add", self.name], capture_output=True, text=True))
        _check(self.run(["ip", "link", "set", "lo", "up"]))
        return self

    def delete(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        subprocess.run(["ip", "netns", "delete", self.name], capture_output=True)

    def exists(self) -> bool:
        out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        return any(line.split()[0] == self.name for line in out.splitlines() if line.strip())

    # processes ------------------------------------------------------------

    def run(self, args: Sequence[str], *, env: Mapping[str, str] | None = None, timeout: float = 60,
            **kw) -> subprocess.CompletedProcess:
        """Runs `args` inside the namespace; text output captured."""
        return subprocess.run([*self.prefix, *map(str, args)], env=None if env is None else dict(env),
                              capture_output=True, text=True, timeout=timeout, **kw)

    def popen(self, args: Sequence[str], **kw) -> subprocess.Popen:
        """Starts `args` inside the namespace. `ip netns exec` execs the
        command, so the Popen's pid is the command's own (signals reach it)."""
        return subprocess.Popen([*self.prefix, *map(str, args)], **kw)

    # this process's calls -------------------------------------------------

    def call(self, fn: Callable[..., Any], *args, timeout: float = 60, **kw) -> Any:
        """Runs fn(*args, **kw) on a thread inside the namespace."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self.name,
                                            initializer=_setns, initargs=(f"/run/netns/{self.name}",))
        return self._pool.submit(fn, *args, **kw).result(timeout=timeout)


def _check(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, (proc.args, proc.returncode, proc.stdout, proc.stderr)
    return proc


# --------------------------------------------------------------------------
# the podid server inside the namespace


class NsServerProcess(ServerProcess):
    """`podid server` (see ServerProcess) started inside a namespace."""

    def __init__(self, ns: NetNs, *args, **kw):
        super().__init__(*args, **kw)
        self.ns = ns

    def start(self, timeout: float = 30.0) -> "NsServerProcess":
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PODID_", "AWS_"))}
        env.update({"PODID_LOG": "info", "NO_COLOR": "1", **self.extra_env})
        self._log = open(self.log_path, "wb")
        self.proc = self.ns.popen(
            [podid_bin(), "server", "--listen", "127.0.0.1:0", "--database-url", f"sqlite://{self.db_path}",
             "--keys-file", self.keys_file, "--region", REGION, "--account-id", self.account_id,
             "--metrics-listen", "127.0.0.1:0", *self.extra_args],
            stdout=subprocess.PIPE, stderr=self._log, stdin=subprocess.DEVNULL, env=env, bufsize=0,
        )
        self.endpoint = self._read_listen_line(timeout)
        return self


# --------------------------------------------------------------------------
# the agent inside the namespace


class AgentProcess:
    """`podid agent` inside the node, signing broker calls with `key`."""

    LISTENING = "podid agent listening on "
    PROBES = "podid agent probes on "
    METRICS = "podid agent metrics on "

    def __init__(self, ns: NetNs, workdir: Path, key: ApiKey, cluster: str, endpoint: str,
                 extra_args: Sequence[str] = ()):
        self.ns = ns
        self.workdir = workdir
        self.key = key
        self.cluster = cluster
        self.endpoint = endpoint
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen | None = None
        self.listening: list[str] = []
        self.probes = ""
        self.metrics = ""
        self.log_path = workdir / "agent.log"

    def env(self) -> dict[str, str]:
        home = self.workdir / "agent-home"
        home.mkdir(parents=True, exist_ok=True)
        (home / "aws-config").write_text("")
        (home / "aws-credentials").write_text("")
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "AWS_ACCESS_KEY_ID": self.key.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.key.secret_access_key,
            "AWS_REGION": REGION,
            "AWS_CONFIG_FILE": str(home / "aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(home / "aws-credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
            "PODID_LOG": "info",
            "NO_COLOR": "1",
        }

    def start(self, timeout: float = 30.0) -> "AgentProcess":
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        self.proc = self.ns.popen(
            [agent_bin(), "--cluster-name", self.cluster, "--endpoint", self.endpoint,
             "--port", "80", *self.extra_args],
            stdout=subprocess.PIPE, stderr=self._log, stdin=subprocess.DEVNULL, env=self.env(), bufsize=0,
        )
        lines = Lines(self.proc, "podid agent", self.log_path)
        self.listening = []
        while True:
            line = lines.next(timeout)
            if line.startswith(self.LISTENING):
                self.listening.append(line[len(self.LISTENING):])
            elif line.startswith(self.PROBES):
                self.probes = line[len(self.PROBES):]
            elif line.startswith(self.METRICS):
                self.metrics = line[len(self.METRICS):]
                return self
            else:
                self.proc.kill()
                raise RuntimeError(f"unexpected agent stdout line {line!r}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        """Sends `sig`, waits, returns the exit status (None: had to be killed)."""
        assert self.proc is not None
        return stop_child(self.proc, self._log, sig, timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def panics(log_path: Path, offset: int = 0) -> list[str]:
    """Lines saying a thread panicked, in the log from `offset` on."""
    with open(log_path, "rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
    return [line.strip() for line in text.splitlines() if "panicked at" in line]
