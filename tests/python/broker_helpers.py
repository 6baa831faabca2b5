"""Helpers of the credential broker's end-to-end tests (test_broker.py).

The parts, all real processes:

* moto (STS/IAM/S3, IAM enforced) in a subprocess of its own (`moto_env.py
  serve`), so that its CPU work does not compete for the test process's GIL
  while the tests fire hundreds of concurrent calls;
* a counting STS proxy in another subprocess (`python broker_helpers.py
  sts-proxy UPSTREAM`): the broker's `--sts-endpoint` points at it, it
  forwards every request to moto byte for byte (the Host header included, so
  the broker's SigV4 signature stays valid) and records, for every call, the
  time it arrived (monotonic clock of the proxy process, taken before any
  other work), the STS `Action` and the form parameters, moto's status and
  when moto's answer came back (`answered`; absent while it has not);
  it can also hold calls for a while (a slow STS: `StsProxy.delay`);
* `podid server` with the broker enabled (see `start_broker_server`);
* test clusters from `podid dev cluster create`, tokens from `podid dev
  token`, or claims signed here with the cluster's own PEM (`DevCluster.sign`)
  when a test needs a token that the dev tool would not mint.

The proxy is asyncio in a process of its own so that the arrival times it
records are accurate to well under a millisecond even when fifty calls arrive
at once: the rate-limit test checks sliding one-second windows at the STS side.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import select
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Iterable
from urllib.parse import parse_qs, quote, urlsplit

import boto3
import requests
from botocore.config import Config

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # when run as `python broker_helpers.py …`
    sys.path.insert(0, str(HERE))

from podid_helpers import (  # noqa: E402
    DEFAULT_AUDIENCE,
    REGION,
    ApiKey,
    Podid,
    ServerProcess,
    cli_env,
    podid_bin,
    signed_request,
)

MOTO_ACCOUNT = "123456789012"
PROXY_LISTEN_PREFIX = "sts proxy listening on "


# --------------------------------------------------------------------------
# small utilities


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def jwt_parts(token: str) -> tuple[dict, Any, str]:
    """(header, payload, signature segment) of a compact JWS."""
    header, payload, signature = token.split(".")
    return json.loads(b64url_decode(header)), json.loads(b64url_decode(payload)), signature


def wait_for(check: Callable[[], Any], *, timeout: float = 10.0, interval: float = 0.05, what: str = "condition"):
    """Polls `check` until it returns something truthy (returned) or the
    deadline passes (AssertionError with the last value). For asynchronous
    effects only (the batched audit writer)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")
        time.sleep(interval)


def _read_line(proc: subprocess.Popen, timeout: float, what: str) -> str:
    """The first stdout line of `proc`, with a deadline (guards a hung child)."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    buf = b""
    deadline = time.monotonic() + timeout
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            proc.kill()
            raise RuntimeError(f"{what} printed no line within {timeout}s")
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            rc = proc.wait(timeout=5)
            raise RuntimeError(f"{what} exited ({rc}) before printing its line")
        buf += chunk
    return buf.split(b"\n", 1)[0].decode().strip()


def _stop_child(proc: subprocess.Popen | None) -> None:
    if proc is None:
        return
    if proc.stdin:
        try:
            proc.stdin.close()
        except OSError:
            pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout:
        proc.stdout.close()


# --------------------------------------------------------------------------
# moto in a subprocess


class MotoProcess:
    """`python moto_env.py serve`: moto set up as the article's world, IAM
    enforced. `world` is the dict moto_env.setup returned."""

    def __init__(self, log_path: Path, prefix: Iterable[str] = ()):
        """`prefix` goes before the command (`ip netns exec NS`, say)."""
        self.log_path = log_path
        self.prefix = list(prefix)
        self.proc: subprocess.Popen | None = None
        self.world: dict = {}

    @property
    def endpoint(self) -> str:
        return self.world["endpoint"]

    def start(self, timeout: float = 60.0) -> "MotoProcess":
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [*self.prefix, sys.executable, str(HERE / "moto_env.py"), "serve"],
            cwd=HERE,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=dict(os.environ),
        )
        try:
            self.world = json.loads(_read_line(self.proc, timeout, "moto"))
        except Exception:
            self._log.close()
            raise RuntimeError("moto did not start:\n" + self.log_path.read_text(errors="replace")[-3000:])
        return self

    def stop(self) -> None:
        _stop_child(self.proc)
        self._log.close()


# --------------------------------------------------------------------------
# the counting STS proxy


class StsProxy:
    """A forwarding proxy in front of moto, in a subprocess; see the module
    docstring. `calls()` returns what it recorded, oldest first."""

    def __init__(self, upstream: str, log_path: Path):
        self.upstream = upstream
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def start(self, timeout: float = 30.0) -> "StsProxy":
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "sts-proxy", self.upstream],
            cwd=HERE,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
        )
        line = _read_line(self.proc, timeout, "sts proxy")
        assert line.startswith(PROXY_LISTEN_PREFIX), line
        self.url = line[len(PROXY_LISTEN_PREFIX):]
        return self

    def calls(self, action: str | None = "AssumeRole") -> list[dict]:
        """Recorded calls ({t, action, params, status}), of `action` only
        unless None."""
        resp = requests.get(self.url + "/__proxy/calls", timeout=10)
        resp.raise_for_status()
        calls = resp.json()["calls"]
        return [c for c in calls if action is None or c["action"] == action]

    def delay(self, ms: int) -> None:
        """Holds every call this long before forwarding it (a slow STS)."""
        resp = requests.post(self.url + "/__proxy/delay", data=str(ms), timeout=10)
        resp.raise_for_status()

    def count(self, action: str = "AssumeRole") -> int:
        return len(self.calls(action))

    def stop(self) -> None:
        _stop_child(self.proc)
        self._log.close()


def repeated_sessions(calls: list[dict]) -> dict[str, list[tuple[float, float | None, int | None]]]:
    """The `RoleSessionName`s STS was asked for more than once, each with its
    calls' (arrival, answered, status), times relative to the first call: one
    issuance sent twice (the broker's SDK retrying a call STS had received)."""
    if not calls:
        return {}
    t0 = min(c["t"] for c in calls)
    by_session: dict[str, list] = {}
    for c in calls:
        answered = c.get("answered")
        by_session.setdefault(c["params"].get("RoleSessionName"), []).append(
            (round(c["t"] - t0, 3), None if answered is None else round(answered - t0, 3), c["status"]))
    return {name: seen for name, seen in by_session.items() if len(seen) > 1}


def max_in_window(times: Iterable[float], window: float = 1.0) -> int:
    """The most events any half-open window [t, t + window) holds."""
    ts = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(ts):
        while t - ts[lo] >= window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


# The proxy itself (runs in the child process). ------------------------------


_HOP_BY_HOP = {"content-length", "transfer-encoding", "connection", "keep-alive"}


def _parse_head(head: bytes) -> tuple[str, list[tuple[str, str]]]:
    lines = head.decode("latin-1").split("\r\n")
    headers = []
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
    return lines[0], headers


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = b""
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                pass
            return body
        body += await reader.readexactly(size)
        await reader.readexactly(2)


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, list[tuple[str, str]], bytes]:
    while True:
        head = await reader.readuntil(b"\r\n\r\n")
        status_line, headers = _parse_head(head)
        status = int(status_line.split(" ", 2)[1])
        if status >= 200:  # skip any 1xx
            break
    if status in (204, 304):
        return status, headers, b""
    if "chunked" in (_header(headers, "transfer-encoding") or "").lower():
        return status, headers, await _read_chunked(reader)
    length = _header(headers, "content-length")
    if length is not None:
        return status, headers, await reader.readexactly(int(length))
    return status, headers, await reader.read()


def _respond(writer: asyncio.StreamWriter, status: int, reason: str, headers: list[tuple[str, str]], body: bytes) -> None:
    out = [f"HTTP/1.1 {status} {reason}"]
    out += [f"{k}: {v}" for k, v in headers if k.lower() not in _HOP_BY_HOP]
    out.append(f"Content-Length: {len(body)}")
    writer.write(("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + body)


class _Stamping(asyncio.StreamReaderProtocol):
    """A stream protocol that notes when the first bytes of a request arrive:
    the moment the event loop reads them off the socket, before any handler
    runs (so fifty requests arriving at once get fifty accurate times)."""

    def __init__(self, reader: asyncio.StreamReader, handle):
        super().__init__(reader, lambda r, w: handle(r, w, self))
        self._first: float | None = None

    def data_received(self, data: bytes) -> None:
        if self._first is None:
            self._first = time.monotonic()
        super().data_received(data)

    def arrived(self) -> float:
        """When the first bytes of the request being read arrived."""
        return self._first if self._first is not None else time.monotonic()

    def request_read(self) -> None:
        """The whole request was read: the next bytes start the next request
        (no pipelining: a client waits for each answer)."""
        self._first = None


async def _proxy_main(upstream: str) -> None:
    up = urlsplit(upstream)
    up_host, up_port = up.hostname, up.port or 80
    calls: list[dict] = []
    settings = {"delay": 0.0}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, stamps: "_Stamping") -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                arrived = stamps.arrived()
                request_line, headers = _parse_head(head)
                method, target, _ = request_line.split(" ", 2)
                if "chunked" in (_header(headers, "transfer-encoding") or "").lower():
                    _respond(writer, 501, "Not Implemented", [], b"chunked requests are not proxied")
                    await writer.drain()
                    return
                body = await reader.readexactly(int(_header(headers, "content-length") or "0"))
                stamps.request_read()

                if target.startswith("/__proxy/calls"):
                    _respond(writer, 200, "OK", [("Content-Type", "application/json")],
                             json.dumps({"calls": calls}).encode())
                    await writer.drain()
                    continue
                if target.startswith("/__proxy/delay"):
                    settings["delay"] = float(body or b"0") / 1000
                    _respond(writer, 204, "No Content", [], b"")
                    await writer.drain()
                    continue

                params: dict[str, str] = {}
                ctype = (_header(headers, "content-type") or "").lower()
                if method == "POST" and "x-www-form-urlencoded" in ctype:
                    params = {k: v[0] for k, v in parse_qs(body.decode(errors="replace")).items()}
                record = {"t": arrived, "action": params.get("Action"), "params": params, "status": None}
                calls.append(record)

                if settings["delay"]:
                    await asyncio.sleep(settings["delay"])
                up_reader, up_writer = await asyncio.open_connection(up_host, up_port)
                try:
                    up_writer.write(head + body)
                    await up_writer.drain()
                    status, rheaders, rbody = await _read_response(up_reader)
                finally:
                    up_writer.close()
                record["status"] = status
                record["answered"] = time.monotonic()
                _respond(writer, status, "Proxied", rheaders, rbody)
                await writer.drain()
                if (_header(headers, "connection") or "").lower() == "close":
                    return
        except Exception as e:  # noqa: BLE001 - log and drop the connection
            print(f"sts proxy: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        finally:
            writer.close()

    loop = asyncio.get_running_loop()

    def factory() -> "_Stamping":
        return _Stamping(asyncio.StreamReader(limit=1 << 20), handle)

    server = await loop.create_server(factory, "127.0.0.1", 0, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    print(f"{PROXY_LISTEN_PREFIX}http://127.0.0.1:{port}", flush=True)

    # Serve until standard input closes (the parent stopped us).
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()


# --------------------------------------------------------------------------
# the broker server


def broker_env(world: dict, home: Path) -> dict[str, str]:
    """The server's environment: the moto broker user's key as the default
    chain's credentials, and no user configuration."""
    home.mkdir(parents=True, exist_ok=True)
    return {
        "AWS_ACCESS_KEY_ID": world["broker_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": world["broker_secret_access_key"],
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": str(home / "aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "HOME": str(home),
    }


def start_broker_server(
    workdir: Path,
    keys_file: Path,
    api_keys: dict[str, ApiKey],
    world: dict,
    sts_endpoint: str,
    *flags: str,
) -> Podid:
    """`podid server --sts-endpoint … FLAGS` with the broker's credentials;
    account 123456789012 (moto's)."""
    server = ServerProcess(
        workdir,
        keys_file,
        extra_args=["--sts-endpoint", sts_endpoint, *flags],
        extra_env=broker_env(world, workdir / "home"),
        account_id=MOTO_ACCOUNT,
    ).start()
    return Podid(server, api_keys)


def log_panics(server: ServerProcess) -> list[str]:
    return [line for line in server.log_path.read_text(errors="replace").splitlines() if "panicked at" in line]


# --------------------------------------------------------------------------
# EKS Auth


def eks_auth_client(podid: Podid, role: str = "node", pool: int = 32):
    """A boto3 `eks-auth` client (one attempt, no retries) signed with a podid key."""
    key = podid.keys[role]
    return boto3.session.Session().client(
        "eks-auth",
        endpoint_url=podid.endpoint,
        region_name=REGION,
        aws_access_key_id=key.access_key_id,
        aws_secret_access_key=key.secret_access_key,
        config=Config(
            # One attempt in all: a 429 or 5xx must reach the test as is.
            retries={"total_max_attempts": 1, "mode": "standard"},
            max_pool_connections=pool,
            connect_timeout=10,
            read_timeout=60,
        ),
    )


def assume_path(cluster: str) -> str:
    return f"/clusters/{quote(cluster, safe='')}/assume-role-for-pod-identity"


def assume_raw(podid: Podid, cluster: str, token: str | None = None, *, body: Any = None,
               role: str | None = "node", **kw) -> requests.Response:
    """The EKS Auth call as a raw request signed as `eks-auth` (role None:
    unsigned). `body` replaces {"token": token} (bytes/str sent as is)."""
    if body is None:
        body = {"token": token}
    key = podid.keys[role] if role else None
    if isinstance(body, (bytes, str)):
        return signed_request(podid.endpoint, "POST", assume_path(cluster), key=key, body=body,
                              headers={"Content-Type": "application/json"}, service="eks-auth", **kw)
    return signed_request(podid.endpoint, "POST", assume_path(cluster), key=key, json_body=body,
                          service="eks-auth", **kw)


# --------------------------------------------------------------------------
# metrics


def scrape(endpoint: str) -> str:
    resp = requests.get(endpoint + "/metrics", timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.text


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels`
    (0 when there are none)."""
    import re

    total = 0.0
    pattern = re.compile(r"^" + re.escape(name) + r"(?:\{([^}]*)\})?\s+([0-9.eE+-]+|NaN|\+Inf)$")
    label_re = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
    for line in text.splitlines():
        m = pattern.match(line)
        if not m:
            continue
        have = dict(label_re.findall(m.group(1) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(m.group(2))
    return total


# --------------------------------------------------------------------------
# test clusters and tokens


def run_podid(args: list[str], home: Path, key: ApiKey | None = None, endpoint: str | None = None,
              timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(podid_bin()), *args],
        env=cli_env(home, key, endpoint),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@dataclass
class DevCluster:
    """A test cluster made by `podid dev cluster create`."""

    name: str
    dir: Path
    issuer: str
    alg: str
    kid: str
    home: Path = field(repr=False)

    @classmethod
    def create(cls, name: str, directory: Path, *, issuer: str | None = None, alg: str | None = None,
               register: Podid | None = None) -> "DevCluster":
        """Creates the key material (and registers the cluster with `register`,
        signed with its admin key, when given)."""
        args = ["dev", "cluster", "create", "--name", name, "--dir", str(directory)]
        if issuer:
            args += ["--issuer", issuer]
        if alg:
            args += ["--alg", alg]
        key = endpoint = None
        if register is not None:
            args += ["--register", "--endpoint", register.endpoint]
            key, endpoint = register.keys["admin"], register.endpoint
        home = directory.parent / f".{directory.name}-home"
        proc = run_podid(args, home, key, endpoint)
        assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr)
        info = json.loads((directory / "cluster.json").read_text())
        return cls(name=info["name"], dir=directory, issuer=info["issuer"], alg=info["alg"], kid=info["kid"],
                   home=home)

    def register(self, podid: Podid) -> None:
        """Registers the same key material with another server."""
        proc = run_podid(["dev", "cluster", "create", "--name", self.name, "--dir", str(self.dir),
                          "--register", "--endpoint", podid.endpoint],
                         self.home, podid.keys["admin"], podid.endpoint)
        assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr)
        info = json.loads((self.dir / "cluster.json").read_text())
        assert info["kid"] == self.kid, "an existing dev cluster must be kept"

    # tokens from the dev tool -------------------------------------------------

    def token(self, namespace: str, service_account: str, *, pod_name: str | None = None,
              pod_uid: str | None = None, node_name: str | None = None, audience: str | None = None,
              expires_in: int | None = None, issued_at: int | None = None) -> str:
        """`podid dev token` for this cluster."""
        args = ["dev", "token", "--cluster-dir", str(self.dir), "--namespace", namespace,
                "--service-account", service_account]
        for flag, value in (("--pod-name", pod_name), ("--pod-uid", pod_uid), ("--node-name", node_name),
                            ("--audience", audience), ("--expires-in", expires_in), ("--issued-at", issued_at)):
            if value is not None:
                args += [flag, str(value)]
        proc = run_podid(args, self.home)
        assert proc.returncode == 0, (proc.returncode, proc.stderr)
        token = proc.stdout.strip()
        assert token.count(".") == 2, token
        return token

    # tokens signed here ----------------------------------------------------

    @cached_property
    def private_key(self):
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        return load_pem_private_key((self.dir / "signing-key.pem").read_bytes(), password=None)

    @cached_property
    def public_pem(self) -> bytes:
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        return self.private_key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)

    def claims(self, namespace: str, service_account: str, *, pod_name: str | None = None,
               pod_uid: str | None = None, node_name: str = "node-1", audience: str = DEFAULT_AUDIENCE,
               issued_at: int | None = None, expires_in: int = 86400) -> dict:
        """Claims shaped like a projected service-account token's (and like
        `podid dev token`'s)."""
        now = int(time.time()) if issued_at is None else issued_at
        return {
            "aud": [audience],
            "exp": now + expires_in,
            "iat": now,
            "nbf": now,
            "iss": self.issuer,
            "jti": str(uuid.uuid4()),
            "kubernetes.io": {
                "namespace": namespace,
                "node": {"name": node_name, "uid": str(uuid.uuid4())},
                "pod": {"name": pod_name or f"{service_account}-pod", "uid": pod_uid or str(uuid.uuid4())},
                "serviceaccount": {"name": service_account, "uid": str(uuid.uuid4())},
            },
            "sub": f"system:serviceaccount:{namespace}:{service_account}",
        }

    def sign(self, payload: Any, *, header: dict | None = None, raw_payload: bytes | None = None) -> str:
        """A compact JWS over `payload` (any JSON value, or `raw_payload`
        bytes) signed RS256 (PKCS#1 v1.5 + SHA-256) with this cluster's key;
        the header defaults to {"alg": "RS256", "kid": kid}."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        assert self.alg == "RS256", "sign() does RS256 only"
        hdr = header if header is not None else {"alg": "RS256", "kid": self.kid}
        body = raw_payload if raw_payload is not None else json.dumps(payload, separators=(",", ":")).encode()
        signing_input = f"{b64url(json.dumps(hdr, separators=(',', ':')).encode())}.{b64url(body)}"
        signature = self.private_key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{b64url(signature)}"

    def sign_hs256_with_public_pem(self, payload: Any) -> str:
        """The classic algorithm-confusion token: HS256 keyed with the public
        key's PEM."""
        hdr = {"alg": "HS256", "kid": self.kid, "typ": "JWT"}
        signing_input = (f"{b64url(json.dumps(hdr).encode())}."
                         f"{b64url(json.dumps(payload, separators=(',', ':')).encode())}")
        mac = hmac.new(self.public_pem, signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{b64url(mac)}"


def unsigned_alg_none(token: str) -> str:
    """The token's payload under {"alg":"none"} with an empty signature."""
    _, payload, _ = token.split(".")
    return f"{b64url(json.dumps({'alg': 'none', 'typ': 'JWT'}).encode())}.{payload}."


def _raise_priority() -> None:
    """Makes the proxy's timestamps independent of the load of the machine:
    the lowest real-time priority (SCHED_FIFO 1) when allowed (root, as in
    CI), else nothing. The proxy blocks in epoll whenever it has nothing to
    do, so it cannot starve the machine."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
    except (AttributeError, OSError):
        pass


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "sts-proxy":
        _raise_priority()
        asyncio.run(_proxy_main(sys.argv[2]))
    else:
        sys.exit("usage: broker_helpers.py sts-proxy UPSTREAM_URL")
