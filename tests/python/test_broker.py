"""The credential broker (EKS Auth `AssumeRoleForPodIdentity`) end to end.

Real parts only: moto as STS/IAM/S3 with IAM enforced (trust policies on
AssumeRole, identity policies on S3), a counting proxy between the broker and
moto (what STS saw, and when), `podid server` with the broker on, test
clusters and tokens from `podid dev`, boto3's `eks` / `eks-auth` / `s3` /
`sts` clients and the podid CLI.

The module shares one moto, one proxy and one server (fixture `podid`, which
overrides conftest's so its panic check covers this server); the tests that
count STS calls or read metrics from zero start servers of their own
(`fresh_broker`). Tests keep apart by using their own service accounts.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest
from botocore.exceptions import ClientError

import moto_env
from broker_helpers import (
    MOTO_ACCOUNT,
    DevCluster,
    MotoProcess,
    StsProxy,
    assume_raw,
    b64url,
    eks_auth_client,
    jwt_parts,
    log_panics,
    max_in_window,
    metric,
    repeated_sessions,
    scrape,
    start_broker_server,
    unsigned_alg_none,
    wait_for,
)
from podid_helpers import REGION, assert_aws_error, assert_client_error, unique

ROLE = "simple-pod-identity-role"
ROLE_ARN = f"arn:aws:iam::{MOTO_ACCOUNT}:role/{ROLE}"
SESSION_NAME = re.compile(r"^[\w+=,.@-]{2,64}$")


# --------------------------------------------------------------------------
# fixtures


class Ledger:
    """Every token and secret this module handled: none may show up in the
    server's log or in an audit event (test_audit_…, last in the module)."""

    def __init__(self):
        self.secrets: set[str] = set()

    def token(self, token: str) -> str:
        if len(token) >= 40:
            self.secrets.add(token)
            parts = token.split(".")
            # A log line could hold one segment alone; the header is the
            # same for every token of a cluster and says nothing, skip it.
            self.secrets.update(p for p in parts[1:] if len(p) >= 40)
        return token

    def answer(self, out: dict) -> dict:
        creds = out.get("credentials") or {}
        for name in ("secretAccessKey", "sessionToken"):
            if creds.get(name):
                self.secrets.add(creds[name])
        return out


@pytest.fixture(scope="module")
def ledger():
    return Ledger()


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    """moto in a subprocess, set up as the article's world, IAM enforced."""
    m = MotoProcess(tmp_path_factory.mktemp("moto") / "moto.log").start()
    yield m
    m.stop()


@pytest.fixture(scope="module")
def sts_proxy(moto, tmp_path_factory):
    p = StsProxy(moto.endpoint, tmp_path_factory.mktemp("sts-proxy") / "proxy.log").start()
    yield p
    p.stop()


@pytest.fixture(scope="module")
def podid(tmp_path_factory, keys_file, api_keys, moto, sts_proxy, ledger):
    """This module's server: the broker on, STS = moto through the proxy."""
    api = start_broker_server(tmp_path_factory.mktemp("broker-server"), keys_file, api_keys, moto.world,
                              sts_proxy.url)
    ledger.secrets.add(moto.world["broker_secret_access_key"])
    ledger.secrets.update(k.secret_access_key for k in api_keys.values())
    yield api
    rc = api.server.stop()
    assert rc == 0, f"podid server exited with {rc} on SIGTERM:\n{api.server.log_tail()}"
    # Read once the server has exited: everything it logged is flushed.
    log = api.server.log_path.read_text(errors="replace")
    assert ledger.secrets, "nothing recorded"
    leaked = [secret[:24] + "…" for secret in ledger.secrets if secret in log]
    assert not leaked, f"secrets in the module server's log: {leaked}"


@pytest.fixture(scope="module")
def blue(podid, tmp_path_factory):
    return DevCluster.create("blue", tmp_path_factory.mktemp("dev") / "blue", register=podid)


@pytest.fixture(scope="module")
def green(podid, tmp_path_factory):
    return DevCluster.create("green", tmp_path_factory.mktemp("dev") / "green", register=podid)


@pytest.fixture(scope="module")
def node_auth(podid):
    """boto3 `eks-auth` signed with the node key."""
    return eks_auth_client(podid, "node")


@pytest.fixture
def fresh_broker(tmp_path_factory, keys_file, api_keys, moto, ledger):
    """Starts servers of the test's own, each with its own counting proxy:
    start(*flags) → (Podid, StsProxy). Stopped after the test, which then
    checks that each exited 0, never panicked and logged no secret."""
    started = []

    def start(*flags: str):
        work = tmp_path_factory.mktemp("fresh-broker")
        proxy = StsProxy(moto.endpoint, work / "proxy.log").start()
        try:
            api = start_broker_server(work, keys_file, api_keys, moto.world, proxy.url, *flags)
        except Exception:
            proxy.stop()
            raise
        started.append((api, proxy))
        return api, proxy

    yield start
    problems = []
    for api, proxy in started:
        rc = api.server.stop()
        proxy.stop()
        if rc != 0:
            problems.append(f"server exited with {rc} on SIGTERM:\n{api.server.log_tail()}")
        panics = log_panics(api.server)
        if panics:
            problems.append(f"the podid server panicked: {panics[0].strip()}")
        log = api.server.log_path.read_text(errors="replace")
        leaked = [secret[:24] + "…" for secret in ledger.secrets if secret in log]
        if leaked:
            problems.append(f"secrets in the server log: {leaked}")
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


def associate(eks, cluster: str, service_account: str, role_arn: str = ROLE_ARN, namespace: str = "default", **kw):
    return eks.create_pod_identity_association(
        clusterName=cluster, namespace=namespace, serviceAccount=service_account, roleArn=role_arn, **kw
    )["association"]


def client_error(call) -> ClientError:
    with pytest.raises(ClientError) as excinfo:
        call()
    return excinfo


def assert_no_credentials(resp) -> dict:
    body = resp.json()
    assert set(body) <= {"__type", "message"}, body
    assert "credentials" not in resp.text and "accessKeyId" not in resp.text, resp.text
    return body


def s3_with(creds: dict, endpoint: str):
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=creds["accessKeyId"],
        aws_secret_access_key=creds["secretAccessKey"],
        aws_session_token=creds["sessionToken"],
    )


def sts_with(creds: dict, endpoint: str):
    return boto3.session.Session().client(
        "sts",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=creds["accessKeyId"],
        aws_secret_access_key=creds["secretAccessKey"],
        aws_session_token=creds["sessionToken"],
    )


def session_tags(params: dict) -> dict:
    tags = {}
    i = 1
    while f"Tags.member.{i}.Key" in params:
        tags[params[f"Tags.member.{i}.Key"]] = params[f"Tags.member.{i}.Value"]
        i += 1
    return tags


def transitive_keys(params: dict) -> set:
    return {v for k, v in params.items() if k.startswith("TransitiveTagKeys.member.")}


# --------------------------------------------------------------------------
# 1. the article


def test_article_pod_reads_the_bucket_with_the_brokers_credentials(
    podid, eks, blue, moto, node_auth, sts_proxy, ledger
):
    assoc = associate(eks, "blue", "boto3")
    pod_uid = str(uuid.uuid4())
    token = ledger.token(blue.token("default", "boto3", pod_name="boto3-app", pod_uid=pod_uid))
    before = time.time()
    out = ledger.answer(node_auth.assume_role_for_pod_identity(clusterName="blue", token=token))

    assert out["subject"] == {"namespace": "default", "serviceAccount": "boto3"}
    assert out["audience"] == "pods.eks.amazonaws.com"
    assert out["podIdentityAssociation"] == {
        "associationArn": assoc["associationArn"],
        "associationId": assoc["associationId"],
    }
    assert assoc["associationArn"] == (
        f"arn:aws:eks:{REGION}:{MOTO_ACCOUNT}:podidentityassociation/blue/{assoc['associationId']}"
    )
    arn = out["assumedRoleUser"]["arn"]
    assert arn.startswith(f"arn:aws:sts::{MOTO_ACCOUNT}:assumed-role/{ROLE}/eks-blue-"), arn
    session = arn.rsplit("/", 1)[1]
    assert SESSION_NAME.match(session) and session.startswith("eks-blue-boto3-app-"), session
    assert out["assumedRoleUser"]["assumeRoleId"].endswith(":" + session), out["assumedRoleUser"]

    creds = out["credentials"]
    assert creds["accessKeyId"] and creds["secretAccessKey"] and creds["sessionToken"]
    expiration = creds["expiration"]
    assert isinstance(expiration, dt.datetime) and expiration.tzinfo is not None, expiration
    assert before + 3600 - 60 <= expiration.timestamp() <= time.time() + 3600 + 60, expiration

    # The article's pod code, with these credentials, against moto's S3.
    s3 = s3_with(creds, moto.endpoint)
    listed = s3.list_objects_v2(Bucket="sample")
    assert [o["Key"] for o in listed["Contents"]] == ["a.png", "b/c.txt"]
    bucket = boto3.session.Session(
        aws_access_key_id=creds["accessKeyId"],
        aws_secret_access_key=creds["secretAccessKey"],
        aws_session_token=creds["sessionToken"],
        region_name=REGION,
    ).resource("s3", endpoint_url=moto.endpoint).Bucket("sample")
    assert [o.key for o in bucket.objects.all()] == ["a.png", "b/c.txt"]
    # Read-only: writing is denied by the role's policy.
    denied = client_error(lambda: s3.put_object(Bucket="sample", Key="new.txt", Body=b"x"))
    assert denied.value.response["Error"]["Code"] == "AccessDenied", denied.value.response
    # STS knows who this is.
    assert sts_with(creds, moto.endpoint).get_caller_identity()["Arn"] == arn

    # What STS was asked: the role, the session, an hour, the EKS session tags.
    calls = [c for c in sts_proxy.calls() if c["params"].get("RoleSessionName") == session]
    assert len(calls) == 1, calls
    params = calls[0]["params"]
    assert params["RoleArn"] == ROLE_ARN
    assert params["DurationSeconds"] == "3600"
    assert "ExternalId" not in params and "Policy" not in params
    tags = {
        "eks-cluster-arn": f"arn:aws:eks:{REGION}:{MOTO_ACCOUNT}:cluster/blue",
        "eks-cluster-name": "blue",
        "kubernetes-namespace": "default",
        "kubernetes-service-account": "boto3",
        "kubernetes-pod-name": "boto3-app",
        "kubernetes-pod-uid": pod_uid,
    }
    assert session_tags(params) == tags
    assert transitive_keys(params) == set(tags)

    # On the wire the expiration is epoch seconds (a JSON number), as EKS's.
    raw = assume_raw(podid, "blue", token)
    assert raw.status_code == 200, raw.text
    assert raw.headers["content-type"].startswith("application/json")
    body = ledger.answer(raw.json())
    assert isinstance(body["credentials"]["expiration"], int), body["credentials"]["expiration"]
    assert body["credentials"]["expiration"] == int(expiration.timestamp())
    assert body["credentials"]["accessKeyId"] == creds["accessKeyId"]


def test_es256_cluster_tokens_work_too(podid, eks, tmp_path, node_auth, ledger):
    red = DevCluster.create(unique("red"), tmp_path / "red", alg="ES256", register=podid)
    assoc = associate(eks, red.name, "es")
    token = ledger.token(red.token("default", "es"))
    assert jwt_parts(token)[0]["alg"] == "ES256"
    out = ledger.answer(node_auth.assume_role_for_pod_identity(clusterName=red.name, token=token))
    assert out["podIdentityAssociation"]["associationId"] == assoc["associationId"]
    assert out["assumedRoleUser"]["arn"].startswith(f"arn:aws:sts::{MOTO_ACCOUNT}:assumed-role/{ROLE}/eks-")


# --------------------------------------------------------------------------
# 2. no association


def test_no_association_before_creating_and_after_deleting(podid, eks, blue, node_auth, ledger):
    sa = unique("sa")
    token = ledger.token(blue.token("default", sa))

    def call():
        return node_auth.assume_role_for_pod_identity(clusterName="blue", token=token)

    assert_client_error(client_error(call), 404, "ResourceNotFoundException")

    assoc = associate(eks, "blue", sa)
    assert ledger.answer(call())["podIdentityAssociation"]["associationId"] == assoc["associationId"]

    eks.delete_pod_identity_association(clusterName="blue", associationId=assoc["associationId"])
    # The pod's cached credentials are not served without the association.
    excinfo = client_error(call)
    assert_client_error(excinfo, 404, "ResourceNotFoundException")
    assert "credentials" not in excinfo.value.response

    # An unknown cluster is a ResourceNotFoundException too.
    raw = assume_raw(podid, "no-such-cluster", token)
    assert_aws_error(raw, 404, "ResourceNotFoundException")
    assert_no_credentials(raw)


# --------------------------------------------------------------------------
# 3. a role that does not trust the broker


def test_role_not_trusting_the_broker_is_access_denied(podid, eks, blue, moto, node_auth, sts_proxy, ledger):
    sa = unique("untrusted")
    associate(eks, "blue", sa, role_arn=moto.world["untrusted_role_arn"])
    token = ledger.token(blue.token("default", sa))
    before = sts_proxy.count()

    excinfo = client_error(lambda: node_auth.assume_role_for_pod_identity(clusterName="blue", token=token))
    assert_client_error(excinfo, 400, "AccessDeniedException")
    assert "credentials" not in excinfo.value.response

    raw = assume_raw(podid, "blue", token)
    body = assert_aws_error(raw, 400, "AccessDeniedException")
    assert_no_credentials(raw)
    assert "trust" in body["message"].lower(), body

    # STS was asked (and refused) each time: refusals are not cached.
    calls = sts_proxy.calls()[before:]
    assert [c["params"]["RoleArn"] for c in calls] == [moto.world["untrusted_role_arn"]] * 2, calls
    assert all(c["status"] == 403 for c in calls), [c["status"] for c in calls]


# --------------------------------------------------------------------------
# 4. role chaining


def test_role_chaining_with_the_associations_external_id(podid, eks, blue, moto, node_auth, sts_proxy, ledger):
    target = unique("target")
    target_arn = f"arn:aws:iam::{MOTO_ACCOUNT}:role/{target}"
    sa = unique("chain")
    assoc = associate(eks, "blue", sa, role_arn=moto.world["hop_role_arn"], targetRoleArn=target_arn)
    assert assoc["targetRoleArn"] == target_arn and assoc["externalId"], assoc
    assert moto_env.create_target_role(moto.endpoint, target, assoc["externalId"]) == target_arn

    before = sts_proxy.count()
    token = ledger.token(blue.token("default", sa))
    out = ledger.answer(node_auth.assume_role_for_pod_identity(clusterName="blue", token=token))
    arn = out["assumedRoleUser"]["arn"]
    assert arn.startswith(f"arn:aws:sts::{MOTO_ACCOUNT}:assumed-role/{target}/"), arn
    assert out["podIdentityAssociation"]["associationId"] == assoc["associationId"]
    creds = out["credentials"]
    assert sts_with(creds, moto.endpoint).get_caller_identity()["Arn"] == arn
    keys = [o["Key"] for o in s3_with(creds, moto.endpoint).list_objects_v2(Bucket="sample")["Contents"]]
    assert keys == ["a.png", "b/c.txt"]

    # Two hops at STS: the first role, then the target with the ExternalId.
    hops = sts_proxy.calls()[before:]
    assert [c["params"]["RoleArn"] for c in hops] == [moto.world["hop_role_arn"], target_arn], hops
    assert "ExternalId" not in hops[0]["params"]
    assert hops[1]["params"]["ExternalId"] == assoc["externalId"]
    assert int(hops[1]["params"]["DurationSeconds"]) <= 3600
    assert [c["status"] for c in hops] == [200, 200]


def test_role_chaining_to_a_target_expecting_another_external_id_is_denied(
    podid, eks, blue, moto, node_auth, sts_proxy, ledger
):
    target = unique("target")
    target_arn = f"arn:aws:iam::{MOTO_ACCOUNT}:role/{target}"
    sa = unique("chain-bad")
    assoc = associate(eks, "blue", sa, role_arn=moto.world["hop_role_arn"], targetRoleArn=target_arn)
    moto_env.create_target_role(moto.endpoint, target, "not-" + assoc["externalId"])

    before = sts_proxy.count()
    token = ledger.token(blue.token("default", sa))
    raw = assume_raw(podid, "blue", token)
    assert_aws_error(raw, 400, "AccessDeniedException")
    assert_no_credentials(raw)
    hops = sts_proxy.calls()[before:]
    assert [c["params"]["RoleArn"] for c in hops] == [moto.world["hop_role_arn"], target_arn], hops
    assert [c["status"] for c in hops] == [200, 403]
    assert hops[1]["params"]["ExternalId"] == assoc["externalId"]


# --------------------------------------------------------------------------
# 5. bad tokens


@pytest.fixture(scope="module")
def bad_token_setup(podid, eks, blue, green, tmp_path_factory):
    """default/bad-tokens is associated on blue and green; `stranger` is a
    cluster podid does not know, with blue's issuer; `elsewhere` has another
    issuer."""
    for cluster in ("blue", "green"):
        associate(eks, cluster, "bad-tokens")
    base = tmp_path_factory.mktemp("strangers")
    stranger = DevCluster.create("stranger", base / "stranger", issuer=blue.issuer)
    elsewhere = DevCluster.create("elsewhere", base / "elsewhere", issuer="https://issuer.elsewhere.test/x")
    assert stranger.kid != blue.kid
    return {"blue": blue, "green": green, "stranger": stranger, "elsewhere": elsewhere}


def _claims(ctx, **kw):
    return ctx["blue"].claims("default", "bad-tokens", **kw)


def _replace_payload(token: str, payload: dict) -> str:
    header, _, signature = token.split(".")
    return f"{header}.{b64url(json.dumps(payload).encode())}.{signature}"


def _without(d: dict, *path: str) -> dict:
    d = json.loads(json.dumps(d))
    node = d
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return d


NOW = int(time.time())

# name → (body builder, cluster, expected error)
BAD_TOKENS = {
    "empty string": (lambda c: {"token": ""}, "blue", "InvalidTokenException"),
    "whitespace": (lambda c: {"token": "   "}, "blue", "InvalidTokenException"),
    "token missing": (lambda c: {}, "blue", "InvalidParameterException"),
    "token null": (lambda c: {"token": None}, "blue", "InvalidParameterException"),
    "not a JWT": (lambda c: {"token": "not-a-jwt"}, "blue", "InvalidTokenException"),
    "two segments": (lambda c: {"token": ".".join(c["blue"].sign(_claims(c)).split(".")[:2])}, "blue",
                     "InvalidTokenException"),
    "alg none": (lambda c: {"token": unsigned_alg_none(c["blue"].sign(_claims(c)))}, "blue",
                 "InvalidTokenException"),
    "HS256 keyed with the public key PEM": (
        lambda c: {"token": c["blue"].sign_hs256_with_public_pem(_claims(c))}, "blue", "InvalidTokenException"),
    "unknown kid (another cluster's key)": (
        lambda c: {"token": c["stranger"].sign(_claims(c))}, "blue", "InvalidTokenException"),
    "right kid, another key": (
        lambda c: {"token": c["stranger"].sign(_claims(c), header={"alg": "RS256", "kid": c["blue"].kid})},
        "blue", "InvalidTokenException"),
    "no kid, another key": (
        lambda c: {"token": c["stranger"].sign(_claims(c), header={"alg": "RS256"})}, "blue",
        "InvalidTokenException"),
    "another issuer's cluster": (
        lambda c: {"token": c["elsewhere"].token("default", "bad-tokens")}, "blue", "InvalidTokenException"),
    "wrong issuer, right key": (
        lambda c: {"token": c["blue"].sign({**_claims(c), "iss": "https://oidc.podid.test/evil"})}, "blue",
        "InvalidTokenException"),
    "wrong audience": (
        lambda c: {"token": c["blue"].token("default", "bad-tokens", audience="sts.amazonaws.com")}, "blue",
        "InvalidTokenException"),
    "no audience": (lambda c: {"token": c["blue"].sign(_without(_claims(c), "aud"))}, "blue",
                    "InvalidTokenException"),
    "expired": (
        lambda c: {"token": c["blue"].token("default", "bad-tokens", issued_at=NOW - 7200, expires_in=600)},
        "blue", "ExpiredTokenException"),
    "no exp": (lambda c: {"token": c["blue"].sign(_without(_claims(c), "exp"))}, "blue",
               "InvalidTokenException"),
    "issued in the future": (
        lambda c: {"token": c["blue"].token("default", "bad-tokens", issued_at=NOW + 3600)}, "blue",
        "InvalidTokenException"),
    "nbf in the future": (
        lambda c: {"token": c["blue"].sign({**_claims(c), "nbf": NOW + 3600})}, "blue", "InvalidTokenException"),
    "no kubernetes.io claims": (
        lambda c: {"token": c["blue"].sign(_without(_claims(c), "kubernetes.io"))}, "blue",
        "InvalidTokenException"),
    "no pod uid": (
        lambda c: {"token": c["blue"].sign(_without(_claims(c), "kubernetes.io", "pod", "uid"))}, "blue",
        "InvalidTokenException"),
    "no service account name": (
        lambda c: {"token": c["blue"].sign(_without(_claims(c), "kubernetes.io", "serviceaccount", "name"))},
        "blue", "InvalidTokenException"),
    "sub inconsistent with the claims": (
        lambda c: {"token": c["blue"].sign({**_claims(c), "sub": "system:serviceaccount:default:boto3"})},
        "blue", "InvalidTokenException"),
    "sub not a service account": (
        lambda c: {"token": c["blue"].sign({**_claims(c), "sub": "admin"})}, "blue", "InvalidTokenException"),
    "blue's token presented for green": (
        lambda c: {"token": c["blue"].token("default", "bad-tokens")}, "green", "InvalidTokenException"),
    "tampered payload": (
        lambda c: {"token": _replace_payload(c["blue"].token("default", "bad-tokens"),
                                             {**_claims(c), "sub": "system:serviceaccount:kube-system:admin"})},
        "blue", "InvalidTokenException"),
    "64 KiB, validly signed": (
        lambda c: {"token": c["blue"].sign({**_claims(c), "padding": "x" * 65536})}, "blue",
        "InvalidTokenException"),
    "broken base64": (
        lambda c: {"token": "eyJhbGciOiJSUzI1NiJ9.@@not*base64@@.c2ln"}, "blue", "InvalidTokenException"),
    "payload is a JSON array": (
        lambda c: {"token": c["blue"].sign([1, 2, 3])}, "blue", "InvalidTokenException"),
    "payload is not JSON": (
        lambda c: {"token": c["blue"].sign(None, raw_payload=b"\xff\xfe not json")}, "blue",
        "InvalidTokenException"),
}


def test_the_bad_token_cases_are_bad_only_in_their_token(podid, bad_token_setup, node_auth, ledger):
    """Controls: a good token of blue (and one of green) for default/bad-tokens
    is issued credentials, so each case below fails for its token alone."""
    for name in ("blue", "green"):
        token = ledger.token(bad_token_setup[name].token("default", "bad-tokens"))
        out = ledger.answer(node_auth.assume_role_for_pod_identity(clusterName=name, token=token))
        assert out["subject"] == {"namespace": "default", "serviceAccount": "bad-tokens"}
    # The hand-signed claims are a good token too.
    token = ledger.token(bad_token_setup["blue"].sign(_claims(bad_token_setup)))
    assert ledger.answer(node_auth.assume_role_for_pod_identity(clusterName="blue", token=token))["credentials"]


# Why each is refused: the broker's reason, named in its message (for
# InvalidTokenException: "The token is not valid for cluster C: REASON").
REASONS = {
    "empty string": "empty",
    "whitespace": "empty",
    "token missing": "token is required",
    "token null": "token is required",
    "not a JWT": "malformed",
    "two segments": "malformed",
    "alg none": "unsupported_algorithm",
    "HS256 keyed with the public key PEM": "unsupported_algorithm",
    "unknown kid (another cluster's key)": "unknown_key",
    "right kid, another key": "bad_signature",
    "no kid, another key": "bad_signature",
    "another issuer's cluster": "unknown_key",
    "wrong issuer, right key": "wrong_issuer",
    "wrong audience": "wrong_audience",
    "no audience": "missing_claim",
    "expired": "expired",
    "no exp": "missing_claim",
    "issued in the future": "not_yet_valid",
    "nbf in the future": "not_yet_valid",
    "no kubernetes.io claims": "missing_claim",
    "no pod uid": "missing_claim",
    "no service account name": "missing_claim",
    "sub inconsistent with the claims": "inconsistent_subject",
    "sub not a service account": "inconsistent_subject",
    "blue's token presented for green": "unknown_key",
    "tampered payload": "bad_signature",
    "64 KiB, validly signed": "too_large",
    "broken base64": "malformed",
    "payload is a JSON array": "malformed",
    "payload is not JSON": "malformed",
}


@pytest.mark.parametrize("case", list(BAD_TOKENS))
def test_bad_token(case, podid, bad_token_setup, sts_proxy, ledger):
    build, cluster, expected = BAD_TOKENS[case]
    body = build(bad_token_setup)
    token = body.get("token")
    if isinstance(token, str):
        ledger.token(token)
    before = sts_proxy.count()
    resp = assume_raw(podid, cluster, body=body)
    err = assert_aws_error(resp, 400, expected)
    assert REASONS[case] in err["message"].lower(), err
    assert_no_credentials(resp)
    # The answer does not echo the token (or a part of it).
    if token and len(token) >= 40:
        for part in token.split("."):
            if len(part) >= 16:
                assert part not in resp.text, err
    assert len(resp.content) < 2048, len(resp.content)
    assert sts_proxy.count() == before, "a bad token must not cost an STS call"


def test_expired_token_through_boto3(node_auth, bad_token_setup):
    token = bad_token_setup["blue"].token("default", "bad-tokens", issued_at=NOW - 7200, expires_in=600)
    excinfo = client_error(lambda: node_auth.assume_role_for_pod_identity(clusterName="blue", token=token))
    assert_client_error(excinfo, 400, "ExpiredTokenException")


# --------------------------------------------------------------------------
# 6. single flight


def _burst(n: int, call):
    """Runs call(i) for i < n on n threads released together; returns the
    results in order (exceptions are returned, not raised)."""
    barrier = threading.Barrier(n)

    def run(i):
        barrier.wait(timeout=30)
        try:
            return call(i)
        except Exception as e:  # noqa: BLE001 - collected for the assertions
            return e

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(run, range(n)))


def _outcome(result) -> str:
    if isinstance(result, ClientError):
        r = result.response
        return f"{r['Error']['Code']} {r['ResponseMetadata']['HTTPStatusCode']}"
    if isinstance(result, Exception):
        return f"{type(result).__name__}: {result}"
    return "issued"


def test_concurrent_calls_for_one_pod_share_one_sts_call(fresh_broker, blue, ledger):
    api, proxy = fresh_broker("--sts-timeout-ms", "30000")
    blue.register(api)
    associate(api.client("admin"), "blue", "single-flight")
    token = ledger.token(blue.token("default", "single-flight"))
    client = eks_auth_client(api, pool=256)
    # A slow STS (5 s, far longer than 200 callers take to arrive even on a
    # loaded machine): the callers arrive while the one issuance is in flight.
    proxy.delay(5000)

    results = _burst(200, lambda i: client.assume_role_for_pod_identity(clusterName="blue", token=token))

    outcomes = Counter(_outcome(r) for r in results)
    assert outcomes == {"issued": 200}, outcomes
    for r in results:
        ledger.answer(r)
    assert len({r["credentials"]["accessKeyId"] for r in results}) == 1
    assert len({r["credentials"]["sessionToken"] for r in results}) == 1
    assert proxy.count() == 1, proxy.calls()

    m = scrape(api.metrics_endpoint)
    assert metric(m, "podid_broker_credential_cache_total", result="miss") == 1
    joined = metric(m, "podid_broker_credential_cache_total", result="joined")
    assert metric(m, "podid_broker_credential_cache_total", result="hit") + joined == 199
    assert joined >= 100, f"only {joined} callers waited for the issuance in flight"
    assert metric(m, "podid_broker_issuances_total", outcome="issued") == 200
    assert metric(m, "podid_broker_sts_duration_seconds_count") == 1


# --------------------------------------------------------------------------
# 7. the STS rate limit


def _many_pods(api, blue, ledger, n: int, sa: str):
    associate(api.client("admin"), "blue", sa)
    tokens = [ledger.token(blue.sign(blue.claims("default", sa, pod_name=f"{sa}-{i}", pod_uid=str(uuid.uuid4()))))
              for i in range(n)]
    client = eks_auth_client(api, pool=256)
    return _burst(n, lambda i: client.assume_role_for_pod_identity(clusterName="blue", token=tokens[i]))


def test_sts_rate_limit_holds_at_sts_and_waiting_callers_get_credentials(fresh_broker, blue, ledger):
    # No clock in the assertions: the wait is long enough for every caller
    # however slow the machine, and STS is held 1 s a call so that 200 callers
    # against 50 permits (each kept a second after its call) must queue.
    api, proxy = fresh_broker("--sts-max-rps", "50", "--sts-max-wait-ms", "50000", "--sts-timeout-ms", "20000")
    blue.register(api)
    proxy.delay(1000)
    results = _many_pods(api, blue, ledger, 200, "rate-limit")

    outcomes = Counter(_outcome(r) for r in results)
    assert outcomes == {"issued": 200}, outcomes
    issued = [ledger.answer(r) for r in results]
    assert len({r["credentials"]["accessKeyId"] for r in issued}) == len(issued)

    # One AssumeRole per pod: a second call for a session would be one
    # issuance sent twice (see the next test).
    calls = proxy.calls()
    twice = repeated_sessions(calls)
    assert twice == {}, f"sessions STS was asked for twice (arrived, answered, status): {twice}"
    assert len(calls) == len(issued), (len(calls), outcomes)
    assert all(c["status"] == 200 for c in calls)
    times = sorted(c["t"] for c in calls)
    busiest = max_in_window(times, 1.0)
    # Call i + 50 must arrive a second or more after call i.
    short = sorted((times[i + 50] - times[i], i) for i in range(len(times) - 50))[:8]
    assert busiest <= 50, (
        f"STS saw {busiest} AssumeRole calls within one second (limit 50); shortest spans "
        f"from call i to call i+50 (s, i): {[(round(g, 4), i) for g, i in short]}"
    )

    m = scrape(api.metrics_endpoint)
    waited = metric(m, "podid_broker_sts_rate_limit_waits_total")
    assert waited >= 1, "no caller waited for a permit: the limit was never reached"
    assert metric(m, "podid_broker_issuances_total", outcome="issued") == 200
    assert metric(m, "podid_broker_sts_rate_limit_refusals_total") == 0


def test_sts_rate_limit_refuses_callers_that_would_wait_too_long(fresh_broker, blue, ledger):
    # STS held 3 s a call: the first 50 callers keep every permit for 4 s or
    # more, so callers arriving meanwhile find none within their 200 ms
    # (true however slowly the 120 arrive, as long as it is within 4 s).
    api, proxy = fresh_broker("--sts-max-rps", "50", "--sts-max-wait-ms", "200", "--sts-timeout-ms", "20000")
    blue.register(api)
    proxy.delay(3000)
    results = _many_pods(api, blue, ledger, 120, "rate-refuse")

    outcomes = Counter(_outcome(r) for r in results)
    assert set(outcomes) == {"issued", "ThrottlingException 429"}, outcomes
    for r in results:
        if isinstance(r, ClientError):
            assert "credentials" not in r.response
            assert r.response["Error"]["Message"], r.response
    throttled = outcomes["ThrottlingException 429"]
    assert outcomes["issued"] == proxy.count() <= 50 * 2, (outcomes, proxy.count())

    m = scrape(api.metrics_endpoint)
    assert metric(m, "podid_broker_sts_rate_limit_refusals_total") == throttled > 0
    assert metric(m, "podid_broker_issuances_total", outcome="failed", error="ThrottlingException") == throttled


def test_an_sts_call_that_timed_out_is_not_sent_again(fresh_broker, blue, ledger):
    # STS holds the call past the broker's --sts-timeout-ms: it has the request
    # and issues after the broker gave up. Sending it again would be a second
    # issuance under one rate-limit permit. aws-sdk-sts did send it again,
    # within its 2 x 1.5 s operation timeout: the one way the rate-limit test
    # above could see 201 STS calls for 200 pods (once, on a loaded machine).
    api, proxy = fresh_broker("--sts-timeout-ms", "1500")
    blue.register(api)
    associate(api.client("admin"), "blue", "sts-slow")
    token = ledger.token(blue.token("default", "sts-slow"))
    proxy.delay(2500)

    with pytest.raises(ClientError) as refused:
        eks_auth_client(api).assume_role_for_pod_identity(clusterName="blue", token=token)
    assert _outcome(refused.value) == "ServiceUnavailableException 503", refused.value.response
    # The broker's answer ends its STS call: no request can follow it.
    calls = proxy.calls()
    assert len(calls) == 1, repeated_sessions(calls) or calls


# --------------------------------------------------------------------------
# 8. a rotated token


def test_rotated_token_of_the_same_pod_gets_the_same_credentials(eks, blue, node_auth, sts_proxy, ledger):
    sa = unique("rotate")
    assoc = associate(eks, "blue", sa)
    uid = str(uuid.uuid4())
    first = ledger.token(blue.token("default", sa, pod_name="rot", pod_uid=uid, issued_at=NOW - 120))
    second = ledger.token(blue.token("default", sa, pod_name="rot", pod_uid=uid, issued_at=NOW - 60))
    _, c1, _ = jwt_parts(first)
    _, c2, _ = jwt_parts(second)
    assert c1["jti"] != c2["jti"] and c1["iat"] != c2["iat"]

    before = sts_proxy.count()
    r1 = ledger.answer(node_auth.assume_role_for_pod_identity(clusterName="blue", token=first))
    assert sts_proxy.count() == before + 1
    r2 = ledger.answer(node_auth.assume_role_for_pod_identity(clusterName="blue", token=second))
    assert r2["credentials"] == r1["credentials"]
    assert r2["assumedRoleUser"] == r1["assumedRoleUser"]
    assert sts_proxy.count() == before + 1, "the rotated token cost an STS call"

    # Another pod of the same service account has a session of its own.
    other = ledger.token(blue.token("default", sa, pod_name="rot-2"))
    r3 = ledger.answer(node_auth.assume_role_for_pod_identity(clusterName="blue", token=other))
    assert r3["credentials"]["accessKeyId"] != r1["credentials"]["accessKeyId"]
    assert sts_proxy.count() == before + 2

    # Changing the association gives the pod new credentials at its next call.
    eks.update_pod_identity_association(clusterName="blue", associationId=assoc["associationId"],
                                        disableSessionTags=True)
    r4 = ledger.answer(node_auth.assume_role_for_pod_identity(clusterName="blue", token=second))
    assert r4["credentials"]["accessKeyId"] != r1["credentials"]["accessKeyId"]
    calls = sts_proxy.calls()[before:]
    assert len(calls) == 3, calls
    assert session_tags(calls[2]["params"]) == {}, calls[2]["params"]


# --------------------------------------------------------------------------
# 9. who may ask


def test_only_node_and_admin_keys_may_ask_for_credentials(podid, eks, blue, sts_proxy, ledger):
    sa = unique("authz")
    associate(eks, "blue", sa)
    token = ledger.token(blue.token("default", sa))

    out = ledger.answer(eks_auth_client(podid, "admin").assume_role_for_pod_identity(clusterName="blue", token=token))
    assert out["credentials"]["accessKeyId"]
    count = sts_proxy.count()

    excinfo = client_error(
        lambda: eks_auth_client(podid, "reader").assume_role_for_pod_identity(clusterName="blue", token=token)
    )
    assert_client_error(excinfo, 403, "AccessDeniedException")

    raw = assume_raw(podid, "blue", token, role="reader")
    assert_aws_error(raw, 403, "AccessDeniedException")
    assert_no_credentials(raw)
    raw = assume_raw(podid, "blue", token, role=None)
    assert_aws_error(raw, 403, "MissingAuthenticationTokenException")
    assert_no_credentials(raw)
    raw = assume_raw(podid, "blue", token, secret_override="not-the-secret")
    assert_aws_error(raw, 403, {"InvalidSignatureException", "SignatureDoesNotMatchException"})
    assert_no_credentials(raw)
    raw = assume_raw(podid, "blue", token, access_key_override="AKIDUNKNOWN")
    assert_aws_error(raw, 403, "UnrecognizedClientException")
    assert_no_credentials(raw)
    # The node key may do nothing else.
    excinfo = client_error(lambda: podid.client("node").list_pod_identity_associations(clusterName="blue"))
    assert_client_error(excinfo, 403, "AccessDeniedException")
    assert sts_proxy.count() == count


# --------------------------------------------------------------------------
# 10. the audit trail (last: it also checks what the module's tests left)


def _audit_cli(podid_cli, *args):
    proc = podid_cli("audit", "list", "-o", "json", *args)
    assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr)
    return json.loads(proc.stdout)["events"]


def _all_audit_events(podid) -> list[dict]:
    events, token = [], None
    while True:
        query = {"maxResults": "100"}
        if token:
            query["nextToken"] = token
        resp = podid.request("GET", "/podid/v1/audit", query=query)
        assert resp.status_code == 200, resp.text
        page = resp.json()
        events += page["events"]
        token = page.get("nextToken")
        if not token:
            return events


def _audited(podid_cli, request_ids: dict, *filters: str) -> dict:
    """Polls `podid audit list` (the writer batches asynchronously) until the
    events of all `request_ids` ({name: id}) are there; {name: event}."""

    def found():
        events = _audit_cli(podid_cli, "--cluster-name", "blue", "--since", "15m", *filters)
        by_id = {e["requestId"]: e for e in events}
        return {n: by_id[r] for n, r in request_ids.items()} if all(r in by_id for r in request_ids.values()) else None

    return wait_for(found, timeout=10, what=f"the audit events of {sorted(request_ids)}")


def test_sts_refusal_is_audited_as_denied(eks, blue, moto, node_auth, podid_cli, ledger):
    sa = unique("audit-sts-denied")
    assoc = associate(eks, "blue", sa, role_arn=moto.world["untrusted_role_arn"])
    token = ledger.token(blue.token("default", sa, pod_name="denied-pod"))
    excinfo = client_error(lambda: node_auth.assume_role_for_pod_identity(clusterName="blue", token=token))
    request_id = excinfo.value.response["ResponseMetadata"]["RequestId"]
    event = _audited(podid_cli, {"denied": request_id})["denied"]
    assert (event["namespace"], event["serviceAccount"], event["podName"]) == ("default", sa, "denied-pod")
    assert event["associationId"] == assoc["associationId"]
    assert event["roleArn"] == moto.world["untrusted_role_arn"]
    assert (event["outcome"], event.get("errorCode")) == ("denied", "AccessDeniedException"), event


def test_audit_records_decisions_without_secrets(podid, eks, blue, node_auth, podid_cli, api_keys, ledger):
    ok_sa, expired_sa, missing_sa = unique("audit-ok"), unique("audit-expired"), unique("audit-none")
    ok_assoc = associate(eks, "blue", ok_sa)
    expired_assoc = associate(eks, "blue", expired_sa)
    ok_uid = str(uuid.uuid4())
    ok_token = ledger.token(blue.token("default", ok_sa, pod_name="audit-pod", pod_uid=ok_uid))
    expired_token = ledger.token(blue.token("default", expired_sa, pod_name="old-pod", issued_at=NOW - 7200,
                                            expires_in=600))
    missing_token = ledger.token(blue.token("default", missing_sa, pod_name="lonely-pod"))
    bad_token = ledger.token(blue.sign({**blue.claims("default", ok_sa), "iss": "https://wrong.test"}))

    since = int(time.time()) - 1
    request_ids = {}
    out = ledger.answer(node_auth.assume_role_for_pod_identity(clusterName="blue", token=ok_token))
    request_ids["issued"] = out["ResponseMetadata"]["RequestId"]
    for name, token, code in (("expired", expired_token, "ExpiredTokenException"),
                              ("missing", missing_token, "ResourceNotFoundException"),
                              ("invalid", bad_token, "InvalidTokenException")):
        excinfo = client_error(lambda: node_auth.assume_role_for_pod_identity(clusterName="blue", token=token))
        assert excinfo.value.response["Error"]["Code"] == code
        request_ids[name] = excinfo.value.response["ResponseMetadata"]["RequestId"]

    ev = _audited(podid_cli, request_ids)
    for e in ev.values():
        assert e["cluster"] == "blue"
        assert e["caller"] == api_keys["node"].access_key_id
        assert since <= e["time"] <= time.time() + 5, e  # epoch seconds
        assert isinstance(e["seq"], int)

    assert ev["issued"]["outcome"] == "issued" and ev["issued"].get("errorCode") in (None, "")
    assert (ev["issued"]["namespace"], ev["issued"]["serviceAccount"]) == ("default", ok_sa)
    assert (ev["issued"]["podName"], ev["issued"]["podUid"]) == ("audit-pod", ok_uid)
    assert ev["issued"]["associationId"] == ok_assoc["associationId"]
    assert ev["issued"]["roleArn"] == ROLE_ARN

    assert ev["missing"]["outcome"] == "denied"
    assert ev["missing"]["errorCode"] == "ResourceNotFoundException"
    assert (ev["missing"]["namespace"], ev["missing"]["serviceAccount"]) == ("default", missing_sa)
    assert ev["missing"]["podName"] == "lonely-pod"
    assert ev["missing"].get("associationId") is None and ev["missing"].get("roleArn") is None

    # Nothing of a token that did not verify is believed.
    for name, code in (("expired", "ExpiredTokenException"), ("invalid", "InvalidTokenException")):
        assert (ev[name]["outcome"], ev[name]["errorCode"]) == ("denied", code), ev[name]
        for field in ("namespace", "serviceAccount", "podName", "podUid", "associationId", "roleArn"):
            assert ev[name].get(field) is None, (field, ev[name])
    assert expired_assoc["associationId"] not in json.dumps(ev["expired"])

    # Filters.
    denied = _audit_cli(podid_cli, "--cluster-name", "blue", "--outcome", "denied")
    assert denied and all(e["outcome"] == "denied" for e in denied)
    assert {request_ids[n] for n in ("expired", "missing", "invalid")} <= {e["requestId"] for e in denied}
    assert request_ids["issued"] not in {e["requestId"] for e in denied}
    issued = _audit_cli(podid_cli, "--cluster-name", "blue", "--outcome", "issued", "--since", "15m")
    assert request_ids["issued"] in {e["requestId"] for e in issued}
    assert all(e["outcome"] == "issued" for e in issued)
    by_sa = _audit_cli(podid_cli, "--cluster-name", "blue", "--service-account", ok_sa)
    assert [e["requestId"] for e in by_sa] == [request_ids["issued"]], by_sa
    by_ns = _audit_cli(podid_cli, "--namespace", "default", "--service-account", missing_sa)
    assert [e["requestId"] for e in by_ns] == [request_ids["missing"]], by_ns
    assert _audit_cli(podid_cli, "--cluster-name", "green", "--service-account", ok_sa) == []
    assert _audit_cli(podid_cli, "--cluster-name", "blue", "--namespace", "kube-system") == []

    # Newest first, and the module's earlier decisions are there too.
    everything = _all_audit_events(podid)
    seqs = [e["seq"] for e in everything]
    assert seqs == sorted(seqs, reverse=True) and len(set(seqs)) == len(seqs)
    assert Counter(e["outcome"] for e in everything)["issued"] >= 1

    # No token, secret access key or session token in the audit trail (the
    # server's log is checked once it has exited: the `podid` fixture).
    audit_text = json.dumps(everything)
    assert ledger.secrets, "nothing recorded"
    leaked_audit = [s[:24] + "…" for s in ledger.secrets if s in audit_text]
    assert not leaked_audit, f"secrets in audit events: {leaked_audit}"


def test_audit_list_is_not_for_node_keys(podid_cli):
    proc = podid_cli("audit", "list", "-o", "json", role="node")
    assert proc.returncode != 0
    assert "AccessDenied" in proc.stderr, proc.stderr
    reader = podid_cli("audit", "list", "-o", "json", "--cluster-name", "blue", role="reader")
    assert reader.returncode == 0, reader.stderr
