"""The seed article's scenario on podid, end to end, with every real part.

One driver, two users: `test_article.py` (CI) and `scripts/demo.py`
(`./demo.sh`, the README's first command). Both run `Scenario.run()`; they
differ only in the `Reporter` they pass: the test's records every step and
output, the demo's prints them.

The parts are real processes: moto as AWS (STS/IAM/S3, IAM enforced),
`podid server` on the embedded SQLite default with the credential broker on,
one node per cluster running `podid-agent init` and `podid-agent`, one
`podid webhook` per cluster over TLS (a CA made here; clients trust only it),
the real aws CLI, podid's CLI, and the article's boto3 code as the pod.

No kube-apiserver or kubelet runs here; the scenario stands in for them: it
"applies" the article's manifests by sending the Pod to the cluster's webhook
as an AdmissionReview v1 CREATE, applies the JSONPatch the webhook returns
(RFC 6902, the `jsonpatch` package), signs the pod's projected token with the
cluster's key (`podid dev token`, audience and lifetime read from the patched
pod's projected volume) and runs the article's code with exactly the env vars
of the patched pod's container.

Two ways to run (`mode`):

* `netns` (root): a central network namespace holds AWS (moto) and podid's
  server on a bridge with 169.254.200.1/24; every cluster has a node namespace
  linked to the bridge by a veth pair, where `podid-agent init` puts
  169.254.170.23 (and fd00:ec2::23) and `podid agent` listens on port 80 like
  on EKS; the cluster's webhook runs there too. The pod runs in its node's
  namespace, in a private mount namespace (`unshare -m`) with a tmpfs under
  /var/run, so its token is at exactly the path the webhook injected:
  /var/run/secrets/pods.eks.amazonaws.com/serviceaccount/eks-pod-identity-token
  (read-only, as the kubelet mounts it).
* `loopback` (no root needed): every part on 127.0.0.1. The agents listen on
  127.0.0.1:<free port> (`--bind-hosts 127.0.0.1 --port 0`) and the webhooks
  inject that URL (`--credentials-uri`): SDKs accept loopback addresses as a
  container credentials URI. The token goes to the injected path under the
  pod's own directory (the only change to what the webhook injected), because
  /var/run/secrets cannot be written without root.

Every step has a number and a name; when anything fails — a binary missing, a
process not starting, an unexpected answer — `run()` raises
`StepFailed("step N: NAME: what went wrong")`. `close()` stops every process
it started (SIGTERM; exit codes in `exit_codes`) and deletes its namespaces,
also after a failure or an interrupt.

`python article.py moto HOST` is the AWS part: moto on HOST:<free port>, set
up as the article's world by `moto_env.setup` plus a read-only auditor user,
IAM enforced from then on; it prints one JSON line and serves until its stdin
closes.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import datetime as dt
import json
import os
import posixpath
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # imported from scripts/demo.py, or run as a script
    sys.path.insert(0, str(HERE))

import jsonpatch  # noqa: E402
import requests  # noqa: E402
import yaml  # noqa: E402

from node_helpers import AGENT_V4, NetNs, netns_supported  # noqa: E402
from podid_helpers import REGION, ApiKey, Lines, aws_cli_bin, cli_env, make_keys, podid_bin, write_keys_file  # noqa: E402

DATA = HERE / "article_data"
MANIFESTS = DATA / "manifests.yaml"
POD_CODE_FILE = DATA / "list_bucket.py"

ACCOUNT = "123456789012"  # moto's account: the role's and podid's ARNs
ROLE = "simple-pod-identity-role"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/{ROLE}"
BROKER_ARN = f"arn:aws:iam::{ACCOUNT}:user/podid-broker"
BUCKET = "sample"
OBJECTS = ["a.png", "b/c.txt"]
EXPECTED_POD_OUTPUT = "['a.png', 'b/c.txt']"
NAMESPACE = "default"
SERVICE_ACCOUNT = "boto3"
POD_NAME = "boto3"
AUDITOR = "article-auditor"

# What EKS (and podid's webhook) injects.
EKS_CREDENTIALS_URI = f"http://{AGENT_V4}/v1/credentials"
FULL_URI_ENV = "AWS_CONTAINER_CREDENTIALS_FULL_URI"
TOKEN_FILE_ENV = "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"
TOKEN_MOUNT_PATH = "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount"
TOKEN_FILE = f"{TOKEN_MOUNT_PATH}/eks-pod-identity-token"
TOKEN_VOLUME = "eks-pod-identity-token"
TOKEN_AUDIENCE = "pods.eks.amazonaws.com"
TOKEN_EXPIRATION_RANGE = range(79_200, 86_401)  # EKS's jitter when the pod asks for none
POD_IDENTITY_LABEL = "eks.amazonaws.com/pod-identity"

# The central namespace's bridge and the nodes' addresses on it (netns mode).
BRIDGE = "podid-br"
CENTRAL_ADDR = "169.254.200.1"
NODE_ADDRS = {"blue": "169.254.200.2", "green": "169.254.200.3"}

# The steps, in order: (method suffix, name). The name is what the demo shows
# and what a failure message quotes.
STEPS: list[tuple[str, str]] = [
    ("network", "network: where each part runs"),
    ("aws", "AWS (moto, IAM enforced): the article's role and bucket"),
    ("trust_policy", "podid trust-policy: the one statement the role trusts"),
    ("server", "podid server on the embedded SQLite default"),
    ("cluster_blue", "cluster blue: its token signing key registered with podid"),
    ("node_blue", "node blue: podid-agent init, podid-agent"),
    ("webhook_blue", "webhook blue: podid webhook over TLS"),
    ("before_association", "pod boto3 before any association: no credentials"),
    ("associate", "aws eks create-pod-identity-association"),
    ("restarted_pod", "pod boto3 restarted: the webhook injects, the pod lists the bucket"),
    ("association_list", "podid association list: the cluster's associations in one place"),
    ("green", "cluster green: its own key, node and webhook; the same role"),
    ("green_pod", "pod boto3 in green lists the bucket; the role's trust policy never changed"),
    ("cross_cluster", "blue's token presented under green's name is refused"),
    ("delete", "podid association delete: blue's pod loses its credentials"),
]


# --------------------------------------------------------------------------
# failures and reporting


class StepFailed(Exception):
    """A step of the scenario went wrong: `step N: NAME: reason`."""

    def __init__(self, number: int, name: str, reason: str):
        super().__init__(f"step {number}: {name}: {reason}")
        self.number = number
        self.name = name
        self.reason = reason


class StepError(Exception):
    """Raised inside a step; `run()` turns it into StepFailed."""


def expect(condition: Any, message: str) -> None:
    if not condition:
        raise StepError(message)


class Reporter:
    """What the scenario tells while it plays. This one is silent."""

    def step(self, number: int, total: int, name: str) -> None:
        """A step begins."""

    def command(self, where: str, display: str) -> None:
        """A command is run (`where`: the place it runs, display: shell words)."""

    def output(self, text: str) -> None:
        """What a command or a part answered."""

    def note(self, text: str) -> None:
        """An explanation."""

    def check(self, text: str) -> None:
        """Something the step verified."""


@dataclass
class Recorder(Reporter):
    """Records everything (the test's reporter)."""

    events: list[tuple[str, Any]] = field(default_factory=list)

    def step(self, number, total, name):
        self.events.append(("step", (number, name)))

    def command(self, where, display):
        self.events.append(("command", (where, display)))

    def output(self, text):
        self.events.append(("output", text))

    def note(self, text):
        self.events.append(("note", text))

    def check(self, text):
        self.events.append(("check", text))

    @property
    def steps(self) -> list[tuple[int, str]]:
        return [v for k, v in self.events if k == "step"]

    def of_step(self, number: int) -> list[tuple[str, Any]]:
        """The events of step `number`."""
        out, inside = [], False
        for kind, value in self.events:
            if kind == "step":
                inside = value[0] == number
            elif inside:
                out.append((kind, value))
        return out


# --------------------------------------------------------------------------
# where processes run


class Local:
    """This host's own network (loopback mode)."""

    label = "host"
    name = "host"

    def run(self, args: Sequence[Any], *, env: dict[str, str] | None = None, timeout: float = 60,
            **kw) -> subprocess.CompletedProcess:
        return subprocess.run([str(a) for a in args], env=env, capture_output=True, text=True, timeout=timeout, **kw)

    def popen(self, args: Sequence[Any], **kw) -> subprocess.Popen:
        return subprocess.Popen([str(a) for a in args], **kw)

    def call(self, fn: Callable[..., Any], *args, timeout: float = 60, **kw) -> Any:
        return fn(*args, **kw)


class Namespace(NetNs):
    """A network namespace with a label for the output (`central`, `node blue`)."""

    def __init__(self, name: str, label: str):
        super().__init__(name)
        self.label = label


# Long-running children get SIGTERM when the driver dies, even by SIGKILL
# (util-linux `setpriv --pdeathsig`, which then execs the command: no Python
# code runs between fork and exec in a process that has threads).
_SETPRIV = shutil.which("setpriv")


class Child:
    """A long-running process of the scenario: started in its own session (the
    terminal's Ctrl-C reaches only the driver, which stops it in order),
    stderr to a log file, stdout read line by line until it says it is ready."""

    def __init__(self, name: str, place, argv: Sequence[Any], env: dict[str, str], log_path: Path, cwd: Path,
                 *, stop_by_closing_stdin: bool = False):
        self.name = name
        self.place = place
        self.argv = [str(a) for a in argv]
        self.env = env
        self.log_path = log_path
        self.cwd = cwd
        self.stop_by_closing_stdin = stop_by_closing_stdin
        self.proc: subprocess.Popen | None = None
        self.lines: list[str] = []
        self._log = None

    def start(self, ready: Callable[[str], bool], timeout: float = 60) -> list[str]:
        """Starts the process and returns its stdout lines up to the one
        `ready` accepts. A missing binary, an early exit or silence past
        `timeout` raise StepError with the log's tail."""
        binary = Path(self.argv[0])
        expect(binary.exists(), f"{self.name}: {binary} is missing (build it: cargo build -p podid)")
        self._log = open(self.log_path, "ab")
        argv = [_SETPRIV, "--pdeathsig", "TERM", *self.argv] if _SETPRIV else self.argv
        self.proc = self.place.popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
                                     env=self.env, cwd=self.cwd, bufsize=0, start_new_session=True)
        reader = Lines(self.proc, self.name, self.log_path)
        while True:
            try:
                line = reader.next(timeout)
            except RuntimeError as e:
                raise StepError(str(e)) from None
            self.lines.append(line)
            if ready(line):
                return self.lines

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 15) -> int | None:
        """Stops the process (SIGTERM, or closing stdin) and returns its exit
        status; None when it had to be killed. Idempotent."""
        if self.proc is None:
            return None
        proc = self.proc
        if proc.poll() is None:
            if self.stop_by_closing_stdin and proc.stdin:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
            else:
                proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)
            try:
                rc = proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                rc = None
        for stream in (proc.stdin, proc.stdout):
            if stream:
                with contextlib.suppress(OSError):
                    stream.close()
        if self._log:
            self._log.close()
        return rc

    def log_tail(self, n: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        return ""


# --------------------------------------------------------------------------
# TLS material for the webhooks


def make_ca(directory: Path):
    """A CA certificate (EC P-256, one day) and its key; the PEM path."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "podid demo CA")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "ca.crt"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key, path


def make_server_cert(ca, directory: Path, name: str) -> tuple[Path, Path]:
    """A serverAuth certificate for 127.0.0.1 and the webhook Service's DNS
    name, signed by `ca` (from make_ca); (cert path, key path)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_cert, ca_key, _ = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.DNSName("podid-webhook.podid-system.svc"),
        ]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


# --------------------------------------------------------------------------
# the article's manifests and pods


def load_manifests() -> tuple[dict, dict]:
    """(ServiceAccount, Pod) of the article."""
    docs = [d for d in yaml.safe_load_all(MANIFESTS.read_text()) if d]
    by_kind = {d["kind"]: d for d in docs}
    return by_kind["ServiceAccount"], by_kind["Pod"]


def admission_review(pod: dict, uid: str, namespace: str = NAMESPACE) -> dict:
    """The AdmissionReview v1 a kube-apiserver sends a mutating webhook for a
    pod CREATE."""
    gvk = {"group": "", "version": "v1", "kind": "Pod"}
    gvr = {"group": "", "version": "v1", "resource": "pods"}
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": gvk,
            "resource": gvr,
            "requestKind": gvk,
            "requestResource": gvr,
            "name": pod["metadata"].get("name", ""),
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": "kubernetes-admin", "groups": ["system:masters", "system:authenticated"]},
            "object": pod,
            "oldObject": None,
            "dryRun": False,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        },
    }


def projected_token(pod: dict) -> tuple[dict, str] | None:
    """(serviceAccountToken projection, token file path) of the pod's first
    container, or None when the pod has no projected service-account token
    mounted."""
    spec = pod.get("spec", {})
    for volume in spec.get("volumes", []) or []:
        for source in (volume.get("projected") or {}).get("sources", []) or []:
            sat = source.get("serviceAccountToken")
            if not sat:
                continue
            for mount in spec["containers"][0].get("volumeMounts", []) or []:
                if mount["name"] == volume["name"]:
                    return sat, posixpath.join(mount["mountPath"], sat["path"])
    return None


def container_env(pod: dict) -> dict[str, str]:
    """The literal env vars of the pod's first container."""
    return {e["name"]: e.get("value", "") for e in pod["spec"]["containers"][0].get("env", []) or []}


@dataclass
class Admitted:
    """A pod as the stand-in apiserver created it."""

    review_uid: str
    ops: list[dict]
    pod: dict
    warnings: list[str]

    @property
    def uid(self) -> str:
        return self.pod["metadata"]["uid"]


@dataclass
class Cluster:
    name: str
    dir: Path
    issuer: str = ""
    kid: str = ""
    node: Any = None
    agent: Child | None = None
    agent_uri: str = ""
    webhook: Child | None = None
    webhook_url: str = ""
    association_id: str = ""
    token: str = ""  # the running pod's projected token
    pod: Admitted | None = None


# --------------------------------------------------------------------------
# the scenario


def choose_mode(requested: str = "auto") -> tuple[str, str]:
    """(mode, why): `netns` when this process may create network namespaces,
    else `loopback`."""
    why_not = netns_supported()
    if why_not is None and shutil.which("unshare") is None:
        why_not = "`unshare` (util-linux) is not installed"
    if requested == "loopback":
        return "loopback", "asked for"
    if requested == "netns":
        if why_not:
            raise ValueError(f"netns mode is not possible here: {why_not}")
        return "netns", "asked for"
    if requested != "auto":
        raise ValueError(f"unknown mode {requested!r} (auto, netns, loopback)")
    if why_not is None:
        why_not = _cannot_isolate()
    if why_not:
        return "loopback", why_not
    return "netns", "running as root"


def _cannot_isolate() -> str | None:
    """Why this root process cannot create network and mount namespaces
    (a container without CAP_SYS_ADMIN, say), or None when it can."""
    probe = f"podid-probe-{os.getpid()}"
    try:
        made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, timeout=10)
        if made.returncode != 0:
            return f"cannot create network namespaces: {made.stderr.strip()}"
        subprocess.run(["ip", "netns", "delete", probe], capture_output=True, timeout=10)
        mount = subprocess.run(["unshare", "--mount", "true"], capture_output=True, text=True, timeout=10)
        if mount.returncode != 0:
            return f"cannot create mount namespaces: {mount.stderr.strip()}"
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"cannot create namespaces: {e}"
    return None


class Scenario:
    """The article's scenario; see the module docstring.

    `podid`, `aws`, `python`: the binaries (default: this repository's build,
    the venv's aws CLI, this Python — which has boto3 — as the pod's python).
    `session_duration`, `refresh_lead`: the broker's session length and the
    agents' refresh lead (`None`: the agent's default). A deleted association
    reaches the agents through the server's change feed, not a refresh:
    `revoke_deadline` is the issue's bound on it (2 s)."""

    def __init__(self, workdir: Path, reporter: Reporter | None = None, *, mode: str = "auto",
                 podid: Path | None = None, aws: Path | None = None, python: Path | None = None,
                 session_duration: int = 3600, refresh_lead: int | None = None, revoke_deadline: float = 2.0):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.reporter = reporter or Reporter()
        self.mode, self.mode_reason = choose_mode(mode)
        self.podid = Path(podid) if podid else podid_bin()
        self.agent = self.podid.with_name("podid-agent")
        self.aws = Path(aws) if aws else aws_cli_bin()
        self.python = Path(python) if python else Path(sys.executable)
        self.session_duration = session_duration
        self.refresh_lead = refresh_lead
        self.revoke_deadline = revoke_deadline
        self.keys: dict[str, ApiKey] = make_keys()
        self.pod_code = POD_CODE_FILE.read_text()
        self.service_account, self.pod_manifest = load_manifests()
        self.children: list[Child] = []
        self.namespaces: list[Namespace] = []
        self.exit_codes: dict[str, int | None] = {}
        self.results: dict[str, Any] = {}
        self.clusters: dict[str, Cluster] = {}
        self.central: Any = None
        self.host = "127.0.0.1"
        self.world: dict = {}
        self.endpoint = ""
        self.ca = None
        self.current: tuple[int, str] | None = None
        self.completed: list[int] = []
        self._http: dict[str, requests.Session] = {}
        self._closed = False

    # running -------------------------------------------------------------

    def run(self) -> None:
        """Plays every step in order; raises StepFailed naming the step that broke."""
        for number, (key, name) in enumerate(STEPS, 1):
            self.current = (number, name)
            self.reporter.step(number, len(STEPS), name)
            try:
                getattr(self, f"step_{key}")()
            except (StepError, AssertionError) as e:
                raise StepFailed(number, name, str(e) or type(e).__name__) from e
            except subprocess.TimeoutExpired as e:
                raise StepFailed(number, name, f"`{self._display(e.cmd)}` did not finish within {e.timeout}s") from e
            except Exception as e:  # noqa: BLE001 - anything else is a broken step too
                raise StepFailed(number, name, f"{type(e).__name__}: {e}") from e
            self.completed.append(number)
        self.current = None

    def close(self) -> None:
        """Stops every process (in reverse order of start) and deletes the
        namespaces. Idempotent; never raises."""
        if self._closed:
            return
        self._closed = True
        for child in reversed(self.children):
            try:
                self.exit_codes[child.name] = child.stop()
            except Exception as e:  # noqa: BLE001
                self.exit_codes[child.name] = None
                print(f"warning: stopping {child.name}: {e}", file=sys.stderr)
        for ns in reversed(self.namespaces):
            try:
                ns.delete()
            except Exception as e:  # noqa: BLE001
                print(f"warning: deleting namespace {ns.name}: {e}", file=sys.stderr)
        for session in self._http.values():
            session.close()

    def __enter__(self) -> "Scenario":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def namespace_names(self) -> list[str]:
        return [ns.name for ns in self.namespaces]

    def logs(self) -> dict[str, Path]:
        return {c.name: c.log_path for c in self.children}

    # helpers ---------------------------------------------------------------

    def _display(self, argv: Sequence[Any]) -> str:
        """Shell words for the reader: binaries by their name, the work
        directory as $WORK."""
        words = []
        for i, a in enumerate(argv):
            s = str(a)
            names = {str(self.podid): "podid", str(self.agent): "podid-agent", str(self.aws): "aws",
                     str(self.python): "python"}
            if i == 0 and s in names:
                s = names[s]
            words.append(shlex.quote(s).replace(str(self.workdir), "$WORK"))
        return " ".join(words)

    def _home(self, name: str) -> Path:
        home = self.workdir / "homes" / name
        home.mkdir(parents=True, exist_ok=True)
        for f in ("aws-config", "aws-credentials"):
            (home / f).touch()
        return home

    def _base_env(self, home: Path) -> dict[str, str]:
        """A clean environment: nothing of the user's AWS set-up or proxies."""
        return {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "HOME": str(home),
            "LANG": "C.UTF-8",
            "AWS_CONFIG_FILE": str(home / "aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(home / "aws-credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
            "NO_COLOR": "1",
        }

    def _key_env(self, name: str, role: str) -> dict[str, str]:
        key = self.keys[role]
        env = self._base_env(self._home(name))
        env.update({"AWS_ACCESS_KEY_ID": key.access_key_id, "AWS_SECRET_ACCESS_KEY": key.secret_access_key,
                    "AWS_REGION": REGION, "PODID_LOG": "info"})
        return env

    def _cli(self, place, argv: Sequence[Any], *, role: str | None = "admin", show: bool = True,
             check: bool = True, what: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        """Runs a CLI (podid's or aws) in `place` with a clean environment
        signing with `role`'s key; shows the command; a failure is a StepError
        quoting its stderr."""
        binary = Path(str(argv[0]))
        if binary == self.aws:
            expect(binary.exists(), f"the aws CLI is missing: {binary} (run scripts/setup.sh)")
        elif binary == self.podid:
            expect(binary.exists(), f"the podid binary is missing: {binary} (run cargo build -p podid)")
        env = cli_env(self._home(f"cli-{role or 'anonymous'}"), self.keys[role] if role else None,
                      self.endpoint or None)
        if show:
            self.reporter.command(place.label, self._display(argv))
        proc = place.run(argv, env=env, timeout=timeout, cwd=self.workdir)
        if check and proc.returncode != 0:
            said = (proc.stderr or proc.stdout).strip()[-1500:] or "(no output)"
            raise StepError(f"`{what or self._display(argv)}` exited {proc.returncode}: {said}")
        return proc

    def _start(self, child: Child, ready: Callable[[str], bool], timeout: float = 60) -> list[str]:
        self.children.append(child)  # registered first: close() stops it whatever happens next
        return child.start(ready, timeout)

    def http(self, place) -> requests.Session:
        """An HTTP session for calls made from `place`: one per place, since a
        pooled connection belongs to the network namespace that opened it
        (169.254.170.23:80 is a different agent on every node)."""
        if place.label not in self._http:
            session = requests.Session()
            session.trust_env = False  # no proxy from the user's environment
            self._http[place.label] = session
        return self._http[place.label]

    def _node(self, name: str):
        """The place of cluster `name`'s node (netns mode: a namespace linked
        to the central bridge)."""
        if self.mode == "loopback":
            return Local()
        ns = Namespace(f"podid-{name}-{os.getpid()}", f"node {name}")
        self.namespaces.append(ns)
        ns.create()
        veth = f"veth-{name}"[:15]
        for args in (["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns.name],
                     ["ip", "link", "set", veth, "master", BRIDGE],
                     ["ip", "link", "set", veth, "up"]):
            self._must(self.central.run(args))
        for args in (["ip", "addr", "add", f"{NODE_ADDRS[name]}/24", "dev", "eth0"],
                     ["ip", "link", "set", "eth0", "up"]):
            self._must(ns.run(args))
        self.reporter.note(f"node namespace {ns.name}: eth0 {NODE_ADDRS[name]}/24 on the bridge")
        return ns

    @staticmethod
    def _must(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
        if proc.returncode != 0:
            raise StepError(f"`{' '.join(map(str, proc.args))}` exited {proc.returncode}: {proc.stderr.strip()}")
        return proc

    def _auditor(self, service: str):
        """A boto3 client of moto signed by the read-only auditor user."""
        import boto3

        return boto3.session.Session().client(
            service, endpoint_url=self.world["endpoint"], region_name=REGION,
            aws_access_key_id=self.world["auditor_access_key_id"],
            aws_secret_access_key=self.world["auditor_secret_access_key"])

    def read_role(self) -> dict:
        """The role as IAM has it: the trust policy exactly as stored (raw
        text of GetRole's AssumeRolePolicyDocument), parsed, and the inline
        policies."""
        iam = self._auditor("iam")
        raw: dict[str, bytes] = {}
        iam.meta.events.register("after-call.iam.GetRole",
                                 lambda http_response, **_: raw.__setitem__("body", http_response.content))

        def read():
            role = iam.get_role(RoleName=ROLE)["Role"]
            names = iam.list_role_policies(RoleName=ROLE)["PolicyNames"]
            inline = {n: iam.get_role_policy(RoleName=ROLE, PolicyName=n)["PolicyDocument"] for n in names}
            return role, inline

        role, inline = self.central.call(read)
        m = re.search(rb"<AssumeRolePolicyDocument>(.*?)</AssumeRolePolicyDocument>", raw.get("body", b""), re.S)
        expect(m, "GetRole's answer has no AssumeRolePolicyDocument")
        trust = role["AssumeRolePolicyDocument"]
        if isinstance(trust, str):
            trust = json.loads(trust)
        return {"arn": role["Arn"], "trust_raw": m.group(1), "trust": trust, "inline": inline}

    # the stand-in apiserver and kubelet -------------------------------------

    def admit(self, cluster: Cluster) -> Admitted:
        """Sends the article's Pod through the cluster's webhook as an
        AdmissionReview CREATE and applies the returned patch."""
        pod = copy.deepcopy(self.pod_manifest)
        pod["metadata"]["namespace"] = NAMESPACE
        review_uid = str(uuid.uuid4())
        review = admission_review(pod, review_uid)
        ca = str(self.workdir / "tls" / "ca.crt")

        def post():
            return self.http(cluster.node).post(f"{cluster.webhook_url}/mutate", json=review, verify=ca, timeout=10)

        self.reporter.command(cluster.node.label,
                              f"kubectl apply -f manifests.yaml  # stand-in: AdmissionReview CREATE "
                              f"pod {NAMESPACE}/{POD_NAME} → POST {cluster.webhook_url}/mutate")
        resp = cluster.node.call(post)
        expect(resp.status_code == 200, f"the webhook answered {resp.status_code}: {resp.text[:500]}")
        body = resp.json()
        expect(body.get("apiVersion") == "admission.k8s.io/v1" and body.get("kind") == "AdmissionReview",
               f"not an AdmissionReview v1: {str(body)[:300]}")
        answer = body.get("response") or {}
        expect(answer.get("uid") == review_uid, f"response uid {answer.get('uid')!r} is not the request's")
        expect(answer.get("allowed") is True, f"the webhook did not allow the pod: {answer}")
        ops: list[dict] = []
        if answer.get("patch"):
            expect(answer.get("patchType") == "JSONPatch", f"patchType {answer.get('patchType')!r}")
            ops = json.loads(base64.b64decode(answer["patch"]))
        patched = jsonpatch.apply_patch(pod, ops) if ops else pod
        patched["metadata"]["uid"] = str(uuid.uuid4())  # what the apiserver gives the created pod
        return Admitted(review_uid=review_uid, ops=ops, pod=patched, warnings=answer.get("warnings") or [])

    def mint(self, cluster: Cluster, admitted: Admitted, sat: dict) -> str:
        """The kubelet's projected token for the pod: signed with the
        cluster's key, audience and lifetime from the pod's volume."""
        argv = [self.podid, "dev", "token", "--cluster-dir", cluster.dir, "--namespace", NAMESPACE,
                "--service-account", admitted.pod["spec"]["serviceAccountName"],
                "--pod-name", admitted.pod["metadata"]["name"], "--pod-uid", admitted.uid,
                "--node-name", f"node-{cluster.name}", "--audience", sat.get("audience", ""),
                "--expires-in", str(sat.get("expirationSeconds", 3600))]
        proc = self._cli(Local(), argv, role=None, show=False)
        token = proc.stdout.strip()
        expect(token.count(".") == 2, f"podid dev token printed no JWT: {token[:80]!r}")
        return token

    def run_pod(self, cluster: Cluster, admitted: Admitted, token: str | None,
                show: bool = True) -> subprocess.CompletedProcess:
        """Runs the article's code as the pod: in its node, with exactly its
        container's env vars (plus what the container image and moto need:
        PATH, HOME, the region, moto's S3 endpoint, no AWS config files, no
        instance metadata) and its token at the injected path."""
        pod_dir = self.workdir / "pods" / f"{cluster.name}-{admitted.uid}"
        pod_dir.mkdir(parents=True, exist_ok=True)
        home = self._home("pod")
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": str(home),
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT_URL_S3": self.world["endpoint"],
            "AWS_CONFIG_FILE": str(home / "aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(home / "aws-credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        env.update(container_env(admitted.pod))
        argv: list[Any] = [self.python, "-c", self.pod_code]
        projected = projected_token(admitted.pod)
        if projected is not None:
            expect(token, "the pod has a projected token volume but no token was minted")
            _, token_path = projected
            kubelet_copy = pod_dir / "token"
            kubelet_copy.write_text(token)
            if self.mode == "netns":
                # A private mount namespace with a tmpfs over the first existing
                # ancestor of the mount path (/var/run → /run): the token sits at
                # exactly the injected path, read-only, and nothing of it reaches
                # the host's file system.
                mount_dir = posixpath.dirname(token_path)
                base = mount_dir
                while not os.path.isdir(base):
                    base = posixpath.dirname(base)
                expect(base not in ("/", "/var", "/usr", "/etc"), f"no place for a tmpfs on the way to {mount_dir}")
                script = ('set -e; mount -t tmpfs -o mode=0755,size=1m podid-pod "$1"; mkdir -p "$2"; '
                          'cp "$3" "$2/$4"; chmod 0644 "$2/$4"; mount --bind "$2" "$2"; '
                          'mount -o remount,bind,ro "$2"; shift 4; exec "$@"')
                argv = ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", script, "pod",
                        base, mount_dir, kubelet_copy, posixpath.basename(token_path), *argv]
                env["PATH"] = "/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
            else:
                local = pod_dir / "root" / token_path.lstrip("/")
                local.parent.mkdir(parents=True, exist_ok=True)
                local.write_text(token)
                env[TOKEN_FILE_ENV] = str(local)
        if show:
            # The injected variables as the pod has them (in loopback mode the
            # token file is under the pod's directory).
            shown = " ".join(f"{k}={env[k]}" for k in container_env(admitted.pod))
            self.reporter.command(f"{cluster.node.label}, pod {POD_NAME}",
                                  f"{shown + ' ' if shown else ''}python -c \"$(cat list_bucket.py)\"")
        return cluster.node.run(argv, env=env, timeout=60, cwd=pod_dir)

    def agent_get(self, cluster: Cluster, token: str) -> requests.Response:
        """GET the agent's credentials URL from inside the cluster's node."""
        return cluster.node.call(
            lambda: self.http(cluster.node).get(cluster.agent_uri, headers={"Authorization": token}, timeout=10))

    def associate(self, cluster: str) -> dict:
        """The article's command, with the real aws CLI and the admin key."""
        argv = [self.aws, "eks", "create-pod-identity-association", "--endpoint-url", self.endpoint,
                "--cluster-name", cluster, "--namespace", NAMESPACE, "--service-account", SERVICE_ACCOUNT,
                "--role-arn", ROLE_ARN, "--output", "json"]
        proc = self._cli(self.central, argv, what="aws eks create-pod-identity-association")
        try:
            association = json.loads(proc.stdout)["association"]
        except (ValueError, KeyError) as e:
            raise StepError(f"the aws CLI printed no association ({e}): {proc.stdout[:300]!r}") from None
        expect(association.get("clusterName") == cluster and association.get("namespace") == NAMESPACE
               and association.get("serviceAccount") == SERVICE_ACCOUNT and association.get("roleArn") == ROLE_ARN,
               f"unexpected association: {association}")
        self.clusters[cluster].association_id = association["associationId"]
        return association

    @staticmethod
    def pod_error(proc: subprocess.CompletedProcess) -> str:
        """The last line of the pod's traceback."""
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        return lines[-1] if lines else f"(exit {proc.returncode}, no output)"

    # cluster parts ------------------------------------------------------------

    def _register_cluster(self, name: str) -> Cluster:
        directory = self.workdir / "clusters" / name
        cluster = Cluster(name=name, dir=directory)
        self.clusters[name] = cluster
        proc = self._cli(self.central, [self.podid, "dev", "cluster", "create", "--name", name, "--dir", directory,
                                        "--register", "--endpoint", self.endpoint])
        self.reporter.output(proc.stderr.strip())
        info = json.loads((directory / "cluster.json").read_text())
        cluster.issuer, cluster.kid = info["issuer"], info["kid"]
        proc = self._cli(self.central, [self.podid, "cluster", "update", "--name", name,
                                        "--agent-identity", "token"])
        self.reporter.output(proc.stdout.strip())
        described = self._cli(self.central, [self.podid, "cluster", "describe", "--name", name, "--output", "json"],
                              show=False)
        registered = json.loads(described.stdout)
        registered = registered.get("cluster", registered)
        expect(registered.get("agentIdentity") == "token" and registered.get("nodeBinding") is True,
               f"cluster {name} is not on token identity with node binding: {described.stdout[:400]}")
        self.reporter.check(f"cluster {name}'s agents prove their node with their own service-account token "
                            "(no shared node key); a pod token works only through its own node's agent")
        return cluster

    def _agent_token(self, cluster: Cluster) -> Path:
        """The agent's projected token (audience podid, bound to its node), as the
        kubelet would write it into the agent's pod."""
        argv = [self.podid, "dev", "token", "--cluster-dir", cluster.dir, "--agent",
                "--pod-name", f"podid-agent-{cluster.name}", "--node-name", f"node-{cluster.name}",
                "--expires-in", "3600"]
        proc = self._cli(Local(), argv, role=None, show=False)
        token = proc.stdout.strip()
        expect(token.count(".") == 2, f"podid dev token --agent printed no JWT: {token[:80]!r}")
        path = self.workdir / f"agent-{cluster.name}-token"
        path.write_text(token)
        path.chmod(0o600)
        return path

    def _start_agent(self, cluster: Cluster) -> None:
        node = cluster.node
        if self.mode == "netns":
            init = self._cli(node, [self.agent, "init"], role=None)
            self.reporter.output(init.stdout.strip())
            place_args: list[str] = []
        else:
            self.reporter.note("loopback mode: no `podid-agent init` (its addresses need CAP_NET_ADMIN); "
                               "the agent serves on 127.0.0.1")
            place_args = ["--bind-hosts", "127.0.0.1", "--port", "0", "--probe-port", "0",
                          "--metrics-address", "127.0.0.1", "--metrics-port", "0"]
        lead = ["--refresh-lead-secs", str(self.refresh_lead)] if self.refresh_lead is not None else []
        argv = [self.agent, "--cluster-name", cluster.name, "--endpoint", self.endpoint,
                "--identity-token-file", self._agent_token(cluster), *lead, *place_args]
        self.reporter.command(node.label, self._display(argv))
        env = self._base_env(self._home(f"agent-{cluster.name}"))
        env.update({"AWS_REGION": REGION, "PODID_LOG": "info"})  # no AWS key: the token is its identity
        agent = Child(f"agent {cluster.name}", node, argv, env,
                      self.workdir / f"agent-{cluster.name}.log", self.workdir)
        cluster.agent = agent
        lines = self._start(agent, lambda line: line.startswith("podid agent metrics on "))
        listening = [line.removeprefix("podid agent listening on ") for line in lines
                     if line.startswith("podid agent listening on ")]
        self.reporter.output("\n".join(lines))
        expect(listening, f"the agent printed no listener: {lines}")
        if self.mode == "netns":
            expect(f"{AGENT_V4}:80" in listening, f"the agent does not listen on {AGENT_V4}:80: {listening}")
            cluster.agent_uri = EKS_CREDENTIALS_URI
        else:
            cluster.agent_uri = f"http://{listening[0]}/v1/credentials"
        probes = next(line for line in lines if line.startswith("podid agent probes on ")).rsplit(" ", 1)[1]
        ready = node.call(lambda: self.http(node).get(f"http://{probes}/readyz", timeout=5))
        expect(ready.status_code == 200, f"agent /readyz answered {ready.status_code}: {ready.text[:200]}")
        self.reporter.check(f"the agent serves {cluster.agent_uri} and is ready")

    def _start_webhook(self, cluster: Cluster) -> None:
        if self.ca is None:
            self.ca = make_ca(self.workdir / "tls")
        cert, key = make_server_cert(self.ca, self.workdir / "tls", f"webhook-{cluster.name}")
        argv = [self.podid, "webhook", "--listen", "127.0.0.1:0", "--tls-cert", cert, "--tls-key", key,
                "--cluster-name", cluster.name, "--endpoint", self.endpoint]
        if cluster.agent_uri != EKS_CREDENTIALS_URI:
            argv += ["--credentials-uri", cluster.agent_uri]
        self.reporter.command(cluster.node.label, self._display(argv))
        webhook = Child(f"webhook {cluster.name}", cluster.node, argv,
                        self._key_env(f"webhook-{cluster.name}", "reader"),
                        self.workdir / f"webhook-{cluster.name}.log", self.workdir)
        cluster.webhook = webhook
        lines = self._start(webhook, lambda line: line.startswith("podid webhook listening on "))
        self.reporter.output(lines[-1])
        cluster.webhook_url = lines[-1].removeprefix("podid webhook listening on ")
        ca = str(self.workdir / "tls" / "ca.crt")
        ready = cluster.node.call(lambda: self.http(cluster.node).get(f"{cluster.webhook_url}/readyz", verify=ca, timeout=5))
        expect(ready.status_code == 200, f"webhook /readyz answered {ready.status_code}")
        self.reporter.check("TLS handshake verified against the scenario's own CA (the only CA the client trusts)")

    def _pod_lists_the_bucket(self, cluster: Cluster) -> Admitted:
        """Admits the pod with pod identity, mints its token, runs it, and
        checks it prints the bucket."""
        admitted = self.admit(cluster)
        expect(admitted.ops, f"the webhook returned no patch for {NAMESPACE}/{SERVICE_ACCOUNT} in {cluster.name}, "
                             "which has an association")
        self.reporter.output("patch: " + ", ".join(f"{op['op']} {op['path']}" for op in admitted.ops))
        env = container_env(admitted.pod)
        expect(env == {FULL_URI_ENV: cluster.agent_uri, TOKEN_FILE_ENV: TOKEN_FILE},
               f"the patched container's env is {env}")
        projected = projected_token(admitted.pod)
        expect(projected is not None, "the patched pod has no projected service-account token volume")
        sat, token_path = projected
        expect(token_path == TOKEN_FILE, f"the token is mounted at {token_path}, the env var says {TOKEN_FILE}")
        expect(sat.get("audience") == TOKEN_AUDIENCE, f"token audience {sat.get('audience')!r}")
        expect(sat.get("expirationSeconds") in TOKEN_EXPIRATION_RANGE,
               f"token expirationSeconds {sat.get('expirationSeconds')!r} is outside EKS's 79200–86400")
        for k, v in env.items():
            self.reporter.output(f"env {k}={v}")
        self.reporter.output(f"volume {TOKEN_VOLUME}: serviceAccountToken audience={sat['audience']} "
                             f"expirationSeconds={sat['expirationSeconds']} path={sat['path']}, "
                             f"mounted read-only at {TOKEN_MOUNT_PATH}")
        token = self.mint(cluster, admitted, sat)
        cluster.token, cluster.pod = token, admitted
        where = token_path if self.mode == "netns" else "the pod's directory (loopback mode: no root for /var/run)"
        self.reporter.note(f"kubelet stand-in: the pod's token, signed with {cluster.name}'s key "
                           f"(podid dev token), is written at {where}")
        proc = self.run_pod(cluster, admitted, token)
        self.results[f"{cluster.name}_pod_run"] = proc
        expect(proc.returncode == 0, f"the pod failed: {self.pod_error(proc)}")
        expect(proc.stdout == EXPECTED_POD_OUTPUT + "\n", f"the pod printed {proc.stdout!r}")
        self.reporter.output(proc.stdout.strip())
        self.reporter.check(f"the pod printed {EXPECTED_POD_OUTPUT}, as in the article")
        return admitted

    # the steps -----------------------------------------------------------------

    def step_network(self) -> None:
        self.results["mode"] = self.mode
        if self.mode == "loopback":
            self.central = Local()
            self.reporter.note(f"loopback mode ({self.mode_reason}): every part on this host's 127.0.0.1; the "
                               "agents listen on 127.0.0.1:<free port> (SDKs accept a loopback container "
                               "credentials URI) instead of 169.254.170.23, and pods find their token under "
                               "their own directory instead of /var/run/secrets. Run as root for the real thing.")
            return
        self.reporter.note(f"netns mode ({self.mode_reason}): real network namespaces, the agent on "
                           f"{AGENT_V4}:80 as on EKS")
        central = Namespace(f"podid-central-{os.getpid()}", "central")
        self.namespaces.append(central)
        central.create()
        self.central = central
        for args in (["ip", "link", "add", BRIDGE, "type", "bridge"],
                     ["ip", "addr", "add", f"{CENTRAL_ADDR}/24", "dev", BRIDGE],
                     ["ip", "link", "set", BRIDGE, "up"]):
            self._must(central.run(args))
        self.host = CENTRAL_ADDR
        self.reporter.note(f"central namespace {central.name}: AWS (moto) and podid's server on the bridge "
                           f"{BRIDGE} {CENTRAL_ADDR}/24; each cluster's node gets a namespace of its own, "
                           "linked to the bridge")

    def step_aws(self) -> None:
        moto = Child("moto", self.central, [self.python, Path(__file__).resolve(), "moto", self.host],
                     self._base_env(self._home("moto")), self.workdir / "moto.log", self.workdir,
                     stop_by_closing_stdin=True)
        self.reporter.command(self.central.label, f"python article.py moto {self.host}  # moto_env.setup, then IAM enforced")
        lines = self._start(moto, lambda line: line.startswith("{"), timeout=120)
        self.world = json.loads(lines[-1])
        self.reporter.output(f"moto (STS, IAM, S3) on {self.world['endpoint']}")
        role = self.read_role()
        self.results["role_before"] = role
        self.reporter.output(f"role {role['arn']}\ntrust policy: {json.dumps(role['trust'])}")
        statements = role["trust"].get("Statement", [])
        expect(len(statements) == 1, f"the trust policy has {len(statements)} statements: {role['trust']}")
        st = statements[0]
        expect(st.get("Effect") == "Allow" and st.get("Principal") == {"AWS": BROKER_ARN},
               f"the trust policy must allow only the broker {BROKER_ARN}: {st}")
        expect(sorted(_as_list(st.get("Action"))) == ["sts:AssumeRole", "sts:TagSession"],
               f"the trust policy's actions are {st.get('Action')}")
        expect(len(role["inline"]) == 1, f"inline policies: {list(role['inline'])}")
        (name, policy), = role["inline"].items()
        if isinstance(policy, str):
            policy = json.loads(policy)
        self.reporter.output(f"inline policy {name}: {json.dumps(policy)}")
        pst = policy["Statement"]
        expect(len(pst) == 1 and pst[0].get("Effect") == "Allow"
               and sorted(_as_list(pst[0].get("Action"))) == ["s3:GetObject", "s3:ListBucket"]
               and _as_list(pst[0].get("Resource")) == ["arn:aws:s3:::*"],
               f"the inline policy must allow s3:GetObject and s3:ListBucket on arn:aws:s3:::*: {policy}")
        s3 = self._auditor("s3")
        keys = self.central.call(lambda: [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])])
        expect(keys == OBJECTS, f"bucket {BUCKET} holds {keys}")
        self.reporter.output(f"bucket {BUCKET}: {keys}")
        self.reporter.check("the role trusts only podid's broker (sts:AssumeRole, sts:TagSession) and reads S3")

    def step_trust_policy(self) -> None:
        proc = self._cli(Local(), [self.podid, "trust-policy", "--broker-principal", BROKER_ARN], role=None)
        self.reporter.output(proc.stdout.strip())
        printed = json.loads(proc.stdout)
        expect(len(printed.get("Statement", [])) == 1, f"podid trust-policy printed {printed}")
        mine = {k: v for k, v in printed["Statement"][0].items() if k != "Sid"}
        theirs = self.results["role_before"]["trust"]["Statement"][0]
        norm = lambda s: {**s, "Action": sorted(_as_list(s.get("Action")))}  # noqa: E731
        expect(norm(mine) == norm(theirs), f"podid trust-policy prints {mine}, the role trusts {theirs}")
        self.results["trust_policy_printed"] = printed
        self.reporter.check("the role's trust policy holds exactly this statement: one, for every cluster")

    def step_server(self) -> None:
        keys_file = write_keys_file(self.workdir / "keys.toml", self.keys.values())
        db = self.workdir / "podid.db"
        home = self._home("server")
        env = self._base_env(home)
        env.update({
            "AWS_ACCESS_KEY_ID": self.world["broker_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": self.world["broker_secret_access_key"],
            "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION, "PODID_LOG": "info",
        })
        argv = [self.podid, "server", "--listen", f"{self.host}:0", "--database-url", f"sqlite://{db}",
                "--keys-file", keys_file, "--region", REGION, "--account-id", ACCOUNT,
                "--sts-endpoint", self.world["endpoint"], "--session-duration", str(self.session_duration)]
        self.reporter.command(self.central.label, self._display(argv))
        server = Child("podid server", self.central, argv, env, self.workdir / "server.log", self.workdir)
        lines = self._start(server, lambda line: line.startswith("podid server listening on "))
        self.endpoint = lines[-1].removeprefix("podid server listening on ")
        self.reporter.output(lines[-1])
        ready = self.central.call(lambda: self.http(self.central).get(f"{self.endpoint}/readyz", timeout=5))
        expect(ready.status_code == 200, f"/readyz answered {ready.status_code}: {ready.text[:200]}")
        self.reporter.note("admin, reader (webhooks) and node (agents) keys in $WORK/keys.toml; the broker "
                           "signs STS calls as the IAM user podid-broker")

    def step_cluster_blue(self) -> None:
        self._register_cluster("blue")

    def step_node_blue(self) -> None:
        blue = self.clusters["blue"]
        blue.node = self._node("blue")
        self._start_agent(blue)

    def step_webhook_blue(self) -> None:
        self._start_webhook(self.clusters["blue"])

    def step_before_association(self) -> None:
        blue = self.clusters["blue"]
        self.reporter.note(f"ServiceAccount {NAMESPACE}/{self.service_account['metadata']['name']} and Pod "
                           f"{NAMESPACE}/{POD_NAME} (serviceAccountName {self.pod_manifest['spec']['serviceAccountName']})"
                           ", the article's manifests")
        admitted = self.admit(blue)
        self.results["before_admission"] = admitted
        expect(not admitted.ops, f"the webhook patched a pod whose service account has no association: "
                                 f"{admitted.ops}")
        expect(admitted.pod["spec"] == self.pod_manifest["spec"], "the admitted pod's spec changed")
        self.reporter.output("allowed, no patch: boto3 has no association, the pod stays as it is")
        proc = self.run_pod(blue, admitted, None)
        self.results["before_association"] = proc
        error = self.pod_error(proc)
        self.reporter.output(error)
        expect(proc.returncode != 0, f"the pod listed the bucket without an association: {proc.stdout!r}")
        expect("NoCredentialsError" in error, f"expected botocore's NoCredentialsError, the pod said: {error}")
        self.reporter.note("no env vars, no token, no instance metadata: the SDK finds no credentials at all "
                           "(the article got AccessDenied: its SDK fell back to the EKS node's instance role)")
        self.reporter.check("before the association the pod cannot read the bucket")

    def step_associate(self) -> None:
        association = self.associate("blue")
        self.results["association"] = association
        shown = {k: association[k] for k in ("clusterName", "namespace", "serviceAccount", "roleArn",
                                             "associationId", "associationArn") if k in association}
        self.reporter.output(json.dumps({"association": shown}, indent=2))

    def step_restarted_pod(self) -> None:
        self.reporter.note("the pod is recreated (as on EKS, only new pods get pod identity): "
                           "through the webhook again")
        admitted = self._pod_lists_the_bucket(self.clusters["blue"])
        self.results["blue_pod"] = admitted

    def step_association_list(self) -> None:
        blue = self.clusters["blue"]
        proc = self._cli(self.central, [self.podid, "association", "list", "--cluster-name", "blue"], role="reader")
        self.reporter.output(proc.stdout.rstrip())
        rows = [line.split() for line in proc.stdout.strip().splitlines()]
        expect(rows and rows[0] == ["ASSOCIATION", "ID", "CLUSTER", "NAMESPACE", "SERVICE", "ACCOUNT"],
               f"unexpected header: {proc.stdout!r}")
        expect(rows[1:] == [[blue.association_id, "blue", NAMESPACE, SERVICE_ACCOUNT]],
               f"expected one row for {blue.association_id}: {proc.stdout!r}")
        self.results["association_list"] = proc.stdout

    def step_green(self) -> None:
        self.reporter.note("a second cluster, as in a blue/green upgrade: its own issuer and signing key")
        green = self._register_cluster("green")
        green.node = self._node("green")
        blue = self.clusters["blue"]
        expect(green.issuer != blue.issuer and green.kid != blue.kid,
               f"green must have its own issuer and key: {green.issuer} {green.kid}")
        self._start_agent(green)
        self._start_webhook(green)
        association = self.associate("green")
        self.reporter.output(f"association {association['associationId']}: green {NAMESPACE}/{SERVICE_ACCOUNT} → "
                             f"{association['roleArn']} (the same role)")

    def step_green_pod(self) -> None:
        self.results["green_pod"] = self._pod_lists_the_bucket(self.clusters["green"])
        after = self.read_role()
        self.results["role_after"] = after
        before = self.results["role_before"]
        expect(after["trust_raw"] == before["trust_raw"],
               f"the role's trust policy changed:\nbefore {before['trust_raw']!r}\nafter  {after['trust_raw']!r}")
        expect(after["inline"] == before["inline"], "the role's inline policies changed")
        self.reporter.check(f"the role's trust policy is byte-identical to step 2's ({len(after['trust_raw'])} "
                            "bytes): a new cluster needed no IAM change")

    def step_cross_cluster(self) -> None:
        blue, green = self.clusters["blue"], self.clusters["green"]
        self.reporter.command(green.node.label, f"curl -H 'Authorization: <blue pod token>' {green.agent_uri}")
        resp = self.agent_get(green, blue.token)
        self.results["cross_cluster"] = resp
        self.reporter.output(f"{resp.status_code} {resp.text.strip()}")
        expect(resp.status_code == 400, f"blue's token under green's name: expected 400, got {resp.status_code} "
                                        f"{resp.text[:300]}")
        expect(resp.json().get("code") == "InvalidTokenException", f"expected InvalidTokenException: {resp.text}")
        control = self.agent_get(blue, blue.token)
        expect(control.status_code == 200, f"the same token on blue's own node: {control.status_code} {control.text}")
        self.reporter.check("green's broker checks the token against green's keys: blue's signature is refused; "
                            "on blue's node the same token gets credentials")

    def step_delete(self) -> None:
        blue, green = self.clusters["blue"], self.clusters["green"]
        assert blue.pod is not None
        before = self.agent_get(blue, blue.token)
        expect(before.status_code == 200, f"before the delete the agent answered {before.status_code} "
                                          f"{before.text[:300]}")
        self.reporter.note("the agent holds the pod's credentials (fresh for an hour); it follows the server's "
                           "change feed and drops them when their association goes")
        start = time.monotonic()  # the CLI's own start-up and round trip are counted
        proc = self._cli(self.central, [self.podid, "association", "delete", "--cluster-name", "blue",
                                        "--association-id", blue.association_id])
        self.reporter.output(proc.stdout.strip())
        # Asked as the pod's SDK asks, every 20 ms, until the agent refuses.
        attempts = 0
        while True:
            attempts += 1
            resp = self.agent_get(blue, blue.token)
            elapsed = time.monotonic() - start
            if resp.status_code != 200:
                break
            expect(elapsed < self.revoke_deadline,
                   f"the agent still served the pod's credentials {elapsed:.2f}s after the delete "
                   f"(bound {self.revoke_deadline:.0f}s)")
            time.sleep(0.02)
        self.results["revoked_after"] = (elapsed, attempts)
        self.results["agent_after_delete"] = resp
        self.reporter.command(blue.node.label, f"curl -H 'Authorization: <pod token>' {blue.agent_uri}")
        self.reporter.output(f"{resp.status_code} {resp.text.strip()}")
        expect(resp.status_code == 404 and resp.json().get("code") == "ResourceNotFoundException",
               f"the agent answered {resp.status_code} {resp.text[:300]} for a deleted association")
        expect(elapsed < self.revoke_deadline,
               f"the agent refused {elapsed:.2f}s after the delete (bound {self.revoke_deadline:.0f}s)")
        run = self.run_pod(blue, blue.pod, blue.token)
        self.results["after_delete"] = run
        error = self.pod_error(run)
        self.reporter.output(error)
        expect(run.returncode != 0, f"the pod still read the bucket after the agent refused: {run.stdout!r}")
        expect("CredentialRetrievalError" in error or "NoCredentialsError" in error,
               f"the pod failed, but not for lack of credentials: {error}")
        self.reporter.check(f"the agent refused blue's pod {elapsed * 1000:.0f} ms after the delete command "
                            f"started (bound {self.revoke_deadline:.0f} s; 404 "
                            "ResourceNotFoundException); the pod's SDK finds no credentials")
        assert green.pod is not None
        again = self.run_pod(green, green.pod, green.token, show=False)
        expect(again.returncode == 0 and again.stdout == EXPECTED_POD_OUTPUT + "\n",
               f"green's pod lost access too: {self.pod_error(again)}")
        self.reporter.check("green's pod, with its own association, still reads the bucket")


def _as_list(v: Any) -> list:
    return v if isinstance(v, list) else [v]


# --------------------------------------------------------------------------
# the AWS part (a child process)


AUDIT_POLICY = json.dumps({
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow",
                   "Action": ["iam:GetRole", "iam:ListRolePolicies", "iam:GetRolePolicy", "s3:ListBucket"],
                   "Resource": "*"}],
})


def serve_moto(host: str) -> None:
    """moto on HOST:<free port>, the article's world (moto_env.setup) plus an
    auditor who may read the role and list the bucket; IAM enforced; prints
    the world as one JSON line; serves until stdin closes."""
    from moto.server import ThreadedMotoServer

    import moto_env

    server = ThreadedMotoServer(ip_address=host, port=0, verbose=False)
    server.start()
    _, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    world = moto_env.setup(endpoint)
    iam = moto_env.client("iam", endpoint)
    iam.create_user(UserName=AUDITOR)
    iam.put_user_policy(UserName=AUDITOR, PolicyName="read-role-and-bucket", PolicyDocument=AUDIT_POLICY)
    key = iam.create_access_key(UserName=AUDITOR)["AccessKey"]
    world["auditor_access_key_id"] = key["AccessKeyId"]
    world["auditor_secret_access_key"] = key["SecretAccessKey"]
    moto_env.enforce_auth(endpoint)
    print(json.dumps(world), flush=True)
    sys.stdin.read()
    server.stop()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "moto":
        serve_moto(sys.argv[2])
    else:
        sys.exit("usage: article.py moto HOST")
