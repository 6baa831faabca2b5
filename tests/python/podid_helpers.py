"""Shared helpers of podid's Python end-to-end suite.

Everything here talks to a real `podid server` process over HTTP: boto3 and the
aws CLI for the EKS-compatible association API, and raw SigV4-signed requests
(botocore's signer + requests) where a client would refuse to send what the test
needs the *server* to judge.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as _dt
import json
import os
import re
import secrets
import select
import signal
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence
from unittest import mock
from urllib.parse import quote

import boto3
import botocore.auth
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

REPO_ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
ACCOUNT_ID = "111122223333"
DEFAULT_AUDIENCE = "pods.eks.amazonaws.com"

ASSOCIATION_ID_RE = re.compile(r"^a-[0-9a-z]{17}$")
ROLE_ARN = "arn:aws:iam::123456789012:role/simple-pod-identity-role"
ROLE_ARN_2 = "arn:aws:iam::123456789012:role/second-role"
TARGET_ROLE_ARN = "arn:aws:iam::210987654321:role/target-role"
POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}
        ],
    }
)


def podid_bin() -> Path:
    """The server/CLI binary: $PODID_BIN, else target/debug/podid of the repo."""
    raw = os.environ.get("PODID_BIN")
    path = Path(raw) if raw else Path("target/debug/podid")
    if not path.is_absolute():
        path = REPO_ROOT / path
    return path


def agent_bin() -> Path:
    """The agent-only executable the DaemonSet runs: $PODID_AGENT_BIN, else
    podid-agent next to podid_bin()."""
    raw = os.environ.get("PODID_AGENT_BIN")
    path = Path(raw) if raw else podid_bin().with_name("podid-agent")
    if not path.is_absolute():
        path = REPO_ROOT / path
    return path


def aws_cli_bin() -> Path:
    """The aws CLI v1 of the test venv."""
    import sys

    beside = Path(sys.executable).parent / "aws"
    if beside.exists():
        return beside
    return REPO_ROOT / ".venv" / "bin" / "aws"


def unique(prefix: str) -> str:
    """A name no other test uses (cluster names, namespaces, service accounts)."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def association_arn(cluster: str, association_id: str) -> str:
    return (
        f"arn:aws:eks:{REGION}:{ACCOUNT_ID}:podidentityassociation/"
        f"{cluster}/{association_id}"
    )


def sample_jwks(n_keys: int = 1) -> dict:
    """A syntactically valid RSA JWKS (the registry does not verify tokens)."""
    keys = []
    for i in range(n_keys):
        modulus = base64.urlsafe_b64encode(secrets.token_bytes(256)).rstrip(b"=")
        keys.append(
            {
                "kty": "RSA",
                "use": "sig",
                "alg": "RS256",
                "kid": f"key-{i}-{uuid.uuid4().hex[:6]}",
                "n": modulus.decode(),
                "e": "AQAB",
            }
        )
    return {"keys": keys}


# --------------------------------------------------------------------------
# keys


@dataclass(frozen=True)
class ApiKey:
    access_key_id: str
    secret_access_key: str
    role: str


def make_keys() -> dict[str, ApiKey]:
    return {
        role: ApiKey(
            access_key_id=f"PODID{role.upper()}",
            secret_access_key=secrets.token_urlsafe(30),
            role=role,
        )
        for role in ("admin", "reader", "node")
    }


def write_keys_file(path: Path, keys: Iterable[ApiKey]) -> Path:
    lines = []
    for key in keys:
        lines += [
            "[[key]]",
            f'access_key_id = "{key.access_key_id}"',
            f'secret_access_key = "{key.secret_access_key}"',
            f'role = "{key.role}"',
            "",
        ]
    path.write_text("\n".join(lines))
    path.chmod(0o600)
    return path


# --------------------------------------------------------------------------
# the server process


def stop_child(proc: subprocess.Popen, log, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
    """Sends `sig` to a child, waits, closes its stdout and `log`, and returns
    its exit status (None: it had to be killed)."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        rc = None
    if proc.stdout:
        proc.stdout.close()
    log.close()
    return rc


class Lines:
    """The stdout lines of a child, read as they come (the buffer is kept
    across calls: several lines may arrive in one read)."""

    def __init__(self, proc: subprocess.Popen, what: str, log_path: Path | None = None):
        assert proc.stdout is not None
        self.proc = proc
        self.what = what
        self.log_path = log_path
        self._buf = b""

    def _tail(self) -> str:
        if self.log_path is None:
            return ""
        with contextlib.suppress(OSError):
            return "\n" + "\n".join(self.log_path.read_text(errors="replace").splitlines()[-30:])
        return ""

    def next(self, timeout: float = 30.0) -> str:
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                self.proc.kill()
                raise RuntimeError(f"{self.what} printed no line within {timeout}s{self._tail()}")
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                rc = self.proc.wait(timeout=5)
                raise RuntimeError(f"{self.what} exited ({rc}) before printing its line{self._tail()}")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode().strip()



class ServerProcess:
    """One `podid server` on 127.0.0.1:0 with its own SQLite file."""

    LISTEN_LINE = re.compile(rb"^podid server listening on (http://127\.0\.0\.1:\d+)$")
    METRICS_LINE = re.compile(rb"^podid server metrics listening on (http://127\.0\.0\.1:\d+)$")

    def __init__(
        self,
        workdir: Path,
        keys_file: Path,
        *,
        extra_args: Sequence[str] = (),
        extra_env: Mapping[str, str] | None = None,
        account_id: str = ACCOUNT_ID,
    ):
        """`extra_args` are appended to the command line (broker flags, say);
        `extra_env` is added to the environment (after PODID_* is cleared)."""
        self.workdir = workdir
        self.keys_file = keys_file
        self.extra_args = list(extra_args)
        self.extra_env = dict(extra_env or {})
        self.account_id = account_id
        self.db_path = workdir / "podid.db"
        self.log_path = workdir / "server.log"
        self.proc: subprocess.Popen | None = None
        self.endpoint: str = ""
        # Where /metrics is served unsigned (--metrics-listen 127.0.0.1:0).
        self.metrics_endpoint: str = ""

    def start(self, timeout: float = 30.0) -> "ServerProcess":
        binary = podid_bin()
        if not binary.exists():
            raise RuntimeError(
                f"podid binary not found at {binary}: run `cargo build -p podid` "
                "or set PODID_BIN"
            )
        env = dict(os.environ)
        for name in list(env):
            if name.startswith("PODID_"):
                del env[name]
        env["PODID_LOG"] = "info"
        env["NO_COLOR"] = "1"
        env.update(self.extra_env)
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [
                str(binary),
                "server",
                "--listen",
                "127.0.0.1:0",
                "--database-url",
                f"sqlite://{self.db_path}",
                "--keys-file",
                str(self.keys_file),
                "--region",
                REGION,
                "--account-id",
                self.account_id,
                "--metrics-listen",
                "127.0.0.1:0",
                *self.extra_args,
            ],
            stdout=subprocess.PIPE,
            stderr=self._log,
            stdin=subprocess.DEVNULL,
            env=env,
            bufsize=0,
        )
        self.endpoint = self._read_listen_line(timeout)
        return self

    def _read_listen_line(self, timeout: float) -> str:
        """Reads the one stdout line the server prints once it is bound (the
        deadline only guards against a hung server; the synchronisation
        itself is the line arriving)."""
        assert self.proc is not None
        lines = Lines(self.proc, "podid server", self.log_path)
        line = lines.next(timeout).encode()
        m = self.LISTEN_LINE.match(line)
        if not m:
            self.proc.kill()
            raise RuntimeError(f"unexpected first stdout line {line!r}")
        metrics = lines.next(timeout).encode()
        mm = self.METRICS_LINE.match(metrics)
        if not mm:
            self.proc.kill()
            raise RuntimeError(f"unexpected second stdout line {metrics!r}")
        self.metrics_endpoint = mm.group(1).decode()
        return m.group(1).decode()

    def log_tail(self, n: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        return ""

    def stop(self) -> int | None:
        """SIGTERM, wait, and return the exit status."""
        assert self.proc is not None
        return stop_child(self.proc, self._log)


# --------------------------------------------------------------------------
# raw signed requests


def encode_query(query: Sequence[tuple[str, str]] | Mapping[str, str] | None) -> str:
    if not query:
        return ""
    pairs = query.items() if isinstance(query, Mapping) else query
    return "&".join(f"{quote(str(k), safe='')}={quote(str(v), safe='')}" for k, v in pairs)


def signed_request(
    endpoint: str,
    method: str,
    path: str,
    *,
    key: ApiKey | None,
    query=None,
    body: bytes | str | None = None,
    json_body: Any = None,
    headers: Mapping[str, str] | None = None,
    secret_override: str | None = None,
    access_key_override: str | None = None,
    signed_at: _dt.datetime | None = None,
    service: str = "eks",
    region: str = REGION,
    timeout: float = 15.0,
) -> requests.Response:
    """Sends `method path` SigV4-signed with `key` (None: unsigned).

    `path` must already be percent-encoded (as a URI label is). `signed_at`
    signs with a patched clock, for skew tests."""
    url = endpoint + path
    qs = encode_query(query)
    if qs:
        url += "?" + qs
    if json_body is not None:
        body = json.dumps(json_body)
    if isinstance(body, str):
        body = body.encode()
    hdrs: dict[str, str] = {}
    if body:
        hdrs["Content-Type"] = "application/json"
    hdrs.update(headers or {})
    if key is not None:
        req = AWSRequest(method=method, url=url, data=body or b"", headers=hdrs)
        creds = Credentials(
            access_key_override or key.access_key_id,
            secret_override or key.secret_access_key,
        )
        signer = SigV4Auth(creds, service, region)
        if signed_at is not None:
            with mock.patch.object(botocore.auth, "get_current_datetime", return_value=signed_at):
                signer.add_auth(req)
        else:
            signer.add_auth(req)
        hdrs = dict(req.headers.items())
    return requests.request(method, url, data=body or None, headers=hdrs, timeout=timeout)


def assert_aws_error(resp: requests.Response, status: int, error_type: str | set) -> dict:
    """Asserts the AWS rest-json error shape and returns the body."""
    assert resp.status_code == status, (resp.status_code, resp.text)
    body = resp.json()
    types = {error_type} if isinstance(error_type, str) else set(error_type)
    assert body.get("__type") in types, body
    assert resp.headers.get("x-amzn-errortype") == body["__type"], dict(resp.headers)
    assert isinstance(body.get("message"), str) and body["message"], body
    assert resp.headers.get("x-amzn-requestid"), dict(resp.headers)
    return body


def assert_client_error(excinfo, status: int, code: str) -> None:
    """For a botocore ClientError: the server (not botocore) answered `code`."""
    err = excinfo.value.response
    assert err["Error"]["Code"] == code, err
    assert err["ResponseMetadata"]["HTTPStatusCode"] == status, err
    assert err["ResponseMetadata"].get("RequestId"), err


# --------------------------------------------------------------------------
# the API, bundled


class Podid:
    """A running server plus everything a test needs to talk to it."""

    def __init__(self, server: ServerProcess, keys: dict[str, ApiKey]):
        self.server = server
        self.keys = keys
        self.endpoint = server.endpoint
        self.metrics_endpoint = server.metrics_endpoint
        self._clients: dict[str, Any] = {}

    def client(self, role: str = "admin", service: str = "eks"):
        if (role, service) not in self._clients:
            key = self.keys[role]
            self._clients[(role, service)] = boto3.session.Session().client(
                service,
                endpoint_url=self.endpoint,
                region_name=REGION,
                aws_access_key_id=key.access_key_id,
                aws_secret_access_key=key.secret_access_key,
                config=Config(
                    retries={"max_attempts": 1, "mode": "standard"},
                    max_pool_connections=32,
                    connect_timeout=5,
                    read_timeout=30,
                ),
            )
        return self._clients[(role, service)]

    def request(self, method: str, path: str, *, role: str | None = "admin", **kw) -> requests.Response:
        key = self.keys[role] if role else None
        return signed_request(self.endpoint, method, path, key=key, **kw)

    # cluster registry -----------------------------------------------------

    def register_cluster(self, name: str | None = None, *, role: str = "admin", **fields) -> dict:
        """Registers a cluster (inline JWKS unless a key source is given)."""
        body = {"name": name or unique("cl"), "issuer": fields.pop("issuer", "https://issuer.example/id/TEST")}
        if not ({"jwks", "jwksUri", "discovery"} & fields.keys()):
            body["jwks"] = sample_jwks()
        body.update(fields)
        resp = self.request("POST", "/podid/v1/clusters", role=role, json_body=body)
        assert resp.status_code == 200, resp.text
        return resp.json()["cluster"]

    def new_cluster(self) -> str:
        return self.register_cluster()["name"]

    # associations ---------------------------------------------------------

    def create_association(self, cluster: str, namespace: str = "default", service_account: str | None = None, **kw) -> dict:
        out = self.client().create_pod_identity_association(
            clusterName=cluster,
            namespace=namespace,
            serviceAccount=service_account or unique("sa"),
            roleArn=kw.pop("roleArn", ROLE_ARN),
            **kw,
        )
        return out["association"]

    def metrics(self) -> dict[tuple[str, str], float]:
        """podid_http_requests_total by (operation, status)."""
        resp = requests.get(self.metrics_endpoint + "/metrics", timeout=10)
        assert resp.status_code == 200, resp.text
        return parse_request_counters(resp.text)


_COUNTER = re.compile(r"^podid_http_requests_total\{([^}]*)\}\s+([0-9.eE+-]+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_request_counters(text: str) -> dict[tuple[str, str], float]:
    out: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        m = _COUNTER.match(line)
        if not m:
            continue
        labels = dict(_LABEL.findall(m.group(1)))
        out[(labels["operation"], labels["status"])] = float(m.group(2))
    return out


# --------------------------------------------------------------------------
# subprocess environments for the CLIs


def cli_env(home: Path, key: ApiKey | None, endpoint: str | None = None) -> dict[str, str]:
    """An environment in which no user configuration can leak in."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not (k.startswith("AWS_") or k.startswith("PODID_") or k.startswith("BOTO"))
    }
    home.mkdir(parents=True, exist_ok=True)
    env.update(
        {
            "HOME": str(home),
            "AWS_CONFIG_FILE": str(home / "aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(home / "aws-credentials"),
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_MAX_ATTEMPTS": "1",
            "AWS_RETRY_MODE": "standard",
            "AWS_PAGER": "",
            "NO_COLOR": "1",
            "PODID_LOG": "warn",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }
    )
    if key is not None:
        env["AWS_ACCESS_KEY_ID"] = key.access_key_id
        env["AWS_SECRET_ACCESS_KEY"] = key.secret_access_key
    if endpoint:
        env["PODID_ENDPOINT"] = endpoint
    return env


# --------------------------------------------------------------------------
# a tiny OIDC/JWKS server


class DocumentServer:
    """Serves fixed documents on 127.0.0.1:0 from a thread and counts hits."""

    def __init__(self):
        self.routes: dict[str, tuple[int, bytes, str]] = {}
        self.hits: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                owner.hits.append(self.path)
                status, body, ctype = owner.routes.get(
                    self.path, (404, b'{"error":"not found"}', "application/json")
                )
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def serve_json(self, path: str, doc: Any, status: int = 200) -> str:
        self.routes[path] = (status, json.dumps(doc).encode(), "application/json")
        return self.url + path

    def serve_raw(self, path: str, body: bytes, status: int = 200, ctype: str = "text/plain") -> str:
        self.routes[path] = (status, body, ctype)
        return self.url + path

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


def closed_port() -> int:
    """A localhost port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
