"""SigV4 with botocore's signer as the oracle.

Each request is signed by botocore (`SigV4Auth`, the signer boto3 and the aws
CLI use), then altered after signing and sent as raw HTTP to a real `podid
server`. Each case asserts that the request is accepted, or refused with the
error AWS answers: the HTTP status, `__type` / `x-amzn-ErrorType` and message
are literals taken from AWS (the IAM guide's "Troubleshoot signed requests",
the Common Errors list, and the messages AWS's JSON services send).

Two targets: the association API (service `eks`, admin key) and
AssumeRoleForPodIdentity (service `eks-auth`, node key, the fast path's shape).
Signed for another region or service (issue 13), a request is refused in AWS's
words; a signed query naming a parameter twice is InvalidParameterException.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import math
import re
import time
from dataclasses import dataclass, field, replace
from typing import Callable
from unittest import mock
from urllib.parse import urlsplit

import botocore.auth
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from podid_helpers import REGION

pytestmark = pytest.mark.timeout(300)

# AWS's answers, as literals.
MISMATCH = (
    403,
    "InvalidSignatureException",
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. Consult the service documentation "
    "for details.",
)
HOST_UNSIGNED = (
    403,
    "InvalidSignatureException",
    "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.",
)
TOKEN_INVALID = (403, "UnrecognizedClientException", "The security token included in the request is invalid")
SESSION_TOKEN = "FwoGZXIvYXdzEXAMPLESESSIONTOKEN"
AMZ = "%Y%m%dT%H%M%SZ"


@dataclass
class Sent:
    """A request as it goes on the wire."""

    method: str
    path: str
    query: str
    headers: list[tuple[str, str]]
    body: bytes

    def get(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def set(self, name: str, value: str) -> "Sent":
        headers = [(k, v) for k, v in self.headers if k.lower() != name.lower()]
        return replace(self, headers=headers + [(name, value)])

    def remove(self, name: str) -> "Sent":
        return replace(self, headers=[(k, v) for k, v in self.headers if k.lower() != name.lower()])

    def signed_headers(self, edit: Callable[[list[str]], list[str]]) -> "Sent":
        auth = self.get("Authorization")
        m = re.search(r"SignedHeaders=([^,]*)", auth)
        names = edit(m.group(1).split(";"))
        return self.set("Authorization", auth.replace(m.group(0), "SignedHeaders=" + ";".join(names)))


@dataclass
class Target:
    name: str
    service: str
    role: str
    method: str
    path: str
    query: str
    body: bytes
    accepted: Callable[[int, dict], bool] = field(repr=False)


def targets(cluster: str) -> dict[str, Target]:
    return {
        "eks": Target(
            "eks", "eks", "admin", "GET", f"/clusters/{cluster}/pod-identity-associations",
            "namespace=default&maxResults=5", b"",
            # ListPodIdentityAssociations answered: authentication passed.
            lambda status, body: status == 200 and body.get("associations") == [],
        ),
        "eks-auth": Target(
            "eks-auth", "eks-auth", "node", "POST", f"/clusters/{cluster}/assume-role-for-pod-identity",
            "", json.dumps({"token": "not-a-jwt"}).encode(),
            # The handler judged the token: authentication passed.
            lambda status, body: status == 400 and body.get("__type") == "InvalidTokenException",
        ),
    }


def sign(podid, target: Target, *, at: dt.datetime | None = None, token: str | None = None,
         region: str = REGION) -> Sent:
    """botocore signs the target's request (with one extra header, X-Podid-Probe)."""
    url = podid.endpoint + target.path + ("?" + target.query if target.query else "")
    headers = {"X-Podid-Probe": "signed"}
    if target.body:
        headers["Content-Type"] = "application/json"
    request = AWSRequest(method=target.method, url=url, data=target.body, headers=headers)
    key = podid.keys[target.role]
    signer = SigV4Auth(Credentials(key.access_key_id, key.secret_access_key, token), target.service, region)
    if at is None:
        signer.add_auth(request)
    else:
        with mock.patch.object(botocore.auth, "get_current_datetime", return_value=at):
            signer.add_auth(request)
    sent = [("Host", urlsplit(url).netloc)] + list(request.headers.items())
    return Sent(target.method, target.path, target.query, sent, target.body)


def send(podid, sent: Sent) -> tuple[int, dict, dict]:
    """Sends `sent` byte for byte; (status, JSON body, headers)."""
    netloc = urlsplit(podid.endpoint).netloc
    host, port = netloc.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.putrequest(sent.method, sent.path + ("?" + sent.query if sent.query else ""),
                        skip_host=True, skip_accept_encoding=True)
        for name, value in sent.headers:
            conn.putheader(name, value)
        if sent.body:
            conn.putheader("Content-Length", str(len(sent.body)))
        conn.endheaders(sent.body or None)
        resp = conn.getresponse()
        raw = resp.read()
        headers = {k.lower(): v for k, v in resp.getheaders()}
        return resp.status, (json.loads(raw) if raw else {}), headers
    finally:
        conn.close()


def assert_refused(answer, status: int, error_type: str, message: str | Callable[[str], bool]) -> None:
    got_status, body, headers = answer
    assert (got_status, body.get("__type")) == (status, error_type), answer
    assert headers.get("x-amzn-errortype") == error_type, headers
    if callable(message):
        assert message(body["message"]), body
    else:
        assert body["message"] == message, body


def day_before(amz: str) -> str:
    return (dt.datetime.strptime(amz, AMZ) - dt.timedelta(days=1)).strftime("%Y%m%d")


def scope_date_mismatch(s: Sent) -> Sent:
    amz = s.get("X-Amz-Date")
    return s.set("Authorization", s.get("Authorization").replace(f"/{amz[:8]}/", f"/{day_before(amz)}/"))


def scope_message(s: Sent) -> str:
    amz = s.get("X-Amz-Date")
    return (
        "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: "
        f"'{day_before(amz)}' != '{amz[:8]}', from '{amz}'."
    )


def one_second_later(s: Sent) -> Sent:
    amz = dt.datetime.strptime(s.get("X-Amz-Date"), AMZ) + dt.timedelta(seconds=1)
    return s.set("X-Amz-Date", amz.strftime(AMZ))


def other_cluster(s: Sent) -> Sent:
    return replace(s, path=re.sub(r"^/clusters/[^/]+/", "/clusters/other-cluster/", s.path))


def changed_body(s: Sent) -> Sent:
    return replace(s, body=json.dumps({"token": "another-token"}).encode())


def added_query(s: Sent) -> Sent:
    return replace(s, query=(s.query + "&" if s.query else "") + "nextToken=abc")


ACCEPTED = "accepted"
# (case, alteration after signing, expected answer: ACCEPTED, (status, type, message) or
# (status, type, function of the sent request giving the message)); for both targets.
COMMON = [
    ("unaltered", lambda s: s, ACCEPTED),
    ("host changed", lambda s: s.set("Host", "podid.example.com"), MISMATCH),
    ("body changed", changed_body, MISMATCH),
    ("path changed", other_cluster, MISMATCH),
    ("query parameter added", added_query, MISMATCH),
    ("unsigned header added", lambda s: s.set("X-Podid-Extra", "1"), ACCEPTED),
    ("signed header added",
     lambda s: s.set("X-Podid-Extra", "1").signed_headers(lambda n: sorted(n + ["x-podid-extra"])), MISMATCH),
    ("signed header removed from the request", lambda s: s.remove("X-Podid-Probe"), MISMATCH),
    ("signed header's value changed", lambda s: s.set("X-Podid-Probe", "changed"), MISMATCH),
    ("header removed from SignedHeaders",
     lambda s: s.signed_headers(lambda n: [x for x in n if x != "x-podid-probe"]), MISMATCH),
    ("host removed from SignedHeaders",
     lambda s: s.signed_headers(lambda n: [x for x in n if x != "host"]), HOST_UNSIGNED),
    ("security token added", lambda s: s.set("X-Amz-Security-Token", SESSION_TOKEN), TOKEN_INVALID),
    ("X-Amz-Date missing", lambda s: s.remove("X-Amz-Date"),
     (400, "IncompleteSignatureException", lambda s: lambda m: "'X-Amz-Date'" in m)),
    ("X-Amz-Date one second later", one_second_later, MISMATCH),
    ("credential scope date is not X-Amz-Date's", scope_date_mismatch,
     (403, "InvalidSignatureException", scope_message)),
]
EKS_ONLY = [
    ("query reordered", lambda s: replace(s, query="&".join(reversed(s.query.split("&")))), ACCEPTED),
    ("query parameter duplicated", lambda s: replace(s, query=s.query + "&namespace=default"), MISMATCH),
]
CASES = [(t, *c) for t in ("eks", "eks-auth") for c in COMMON] + [("eks", *c) for c in EKS_ONLY]


@pytest.fixture(scope="module")
def sigv4_cluster(podid):
    return podid.new_cluster()


def check(podid, target: Target, sent: Sent, expected) -> None:
    answer = send(podid, sent)
    if expected == ACCEPTED:
        assert target.accepted(answer[0], answer[1]), answer
        return
    status, error_type, message = expected
    if callable(message):
        message = message(sent)
    assert_refused(answer, status, error_type, message)


@pytest.mark.parametrize("target_name,case,alter,expected", CASES, ids=[f"{c[0]}: {c[1]}" for c in CASES])
def test_altered_after_signing(podid, sigv4_cluster, target_name, case, alter, expected):
    target = targets(sigv4_cluster)[target_name]
    check(podid, target, alter(sign(podid, target)), expected)


@pytest.mark.parametrize("target_name", ["eks", "eks-auth"])
def test_signed_security_token_is_refused(podid, sigv4_cluster, target_name):
    """botocore signs the token in; podid issues no session tokens, so AWS's
    answer to an unknown token."""
    target = targets(sigv4_cluster)[target_name]
    sent = sign(podid, target, token=SESSION_TOKEN)
    assert "x-amz-security-token" in sent.get("Authorization")
    check(podid, target, sent, TOKEN_INVALID)


@pytest.mark.parametrize("target_name", ["eks", "eks-auth"])
def test_signed_for_another_region_is_refused(podid, sigv4_cluster, target_name):
    """The scope must name the server's --region; AWS's words (as quoted in
    aws/aws-sdk-ruby#508), naming the region sent, not the server's."""
    target = targets(sigv4_cluster)[target_name]
    sent = sign(podid, target, region="eu-west-1")
    assert "/eu-west-1/" in sent.get("Authorization")
    check(podid, target, sent, (403, "InvalidSignatureException",
                                "Credential should be scoped to a valid region, not 'eu-west-1'."))


@pytest.mark.parametrize("target_name,signed_for", [("eks", "eks-auth"), ("eks", "sts"), ("eks-auth", "eks")])
def test_signed_for_another_service_is_refused(podid, sigv4_cluster, target_name, signed_for):
    """The scope must name the operation's service: eks for the association
    API, eks-auth for AssumeRoleForPodIdentity; AWS's words (as quoted in
    cllunsford/aws-signing-proxy#25)."""
    target = targets(sigv4_cluster)[target_name]
    sent = sign(podid, replace(target, service=signed_for))
    check(podid, target, sent, (403, "InvalidSignatureException",
                                f"Credential should be scoped to correct service: '{target.service}'."))


def test_signed_query_naming_a_parameter_twice_is_invalid_parameter(podid, sigv4_cluster):
    """Once the signature holds (unsigned, it is the signature's answer: see
    the "query parameter duplicated" case)."""
    target = targets(sigv4_cluster)["eks"]
    for query, name in [("namespace=default&maxResults=5&namespace=default", "namespace"),
                        ("maxResults=5&maxResults=6", "maxResults")]:
        twice = replace(target, query=query)
        check(podid, twice, sign(podid, twice),
              (400, "InvalidParameterException", f"the query parameter '{name}' is given more than once"))


AMZ_RE = r"(\d{8}T\d{6}Z)"
EXPIRED = re.compile(rf"^Signature expired: {AMZ_RE} is now earlier than {AMZ_RE} \({AMZ_RE} - 5 min\.\)$")
NOT_YET = re.compile(rf"^Signature not yet current: {AMZ_RE} is still later than {AMZ_RE} \({AMZ_RE} \+ 5 min\.\)$")


def parse_amz(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, AMZ).replace(tzinfo=dt.timezone.utc)


def skew_verdict(pattern: re.Pattern, bound: int, t0: float, t1: float, sent: Sent):
    """The check of AWS's skew message: what was sent, the server's time
    (between t0 and t1) and that time -/+ 5 minutes."""

    def matches(message: str) -> bool:
        m = pattern.match(message)
        assert m, message
        signed, limit, server_now = m.group(1), parse_amz(m.group(2)), parse_amz(m.group(3))
        assert signed == sent.get("X-Amz-Date"), message
        assert limit - server_now == dt.timedelta(seconds=bound), message
        assert math.floor(t0) <= server_now.timestamp() <= t1, message
        return True

    return matches


# (offset in seconds, rounding of the signing second, expected): the signing
# second is rounded so that the request's own latency only moves the skew away
# from the 5-minute bound, except for -299 and +301, where a latency over one
# second could: those retry (bounded) only when an attempt took that long.
SKEWS = [
    (-299, math.ceil, ACCEPTED),
    (299, math.floor, ACCEPTED),
    (-301, math.floor, (403, "InvalidSignatureException", EXPIRED, -300)),
    (301, math.ceil, (403, "InvalidSignatureException", NOT_YET, 300)),
]


@pytest.mark.parametrize("target_name", ["eks", "eks-auth"])
@pytest.mark.parametrize("offset,rounding,expected", SKEWS, ids=["-299s", "+299s", "-301s", "+301s"])
def test_clock_skew_bounds(podid, sigv4_cluster, target_name, offset, rounding, expected):
    target = targets(sigv4_cluster)[target_name]
    slow = []
    for _attempt in range(5):
        t0 = time.time()
        at = dt.datetime.fromtimestamp(rounding(t0) + offset, dt.timezone.utc).replace(tzinfo=None)
        sent = sign(podid, target, at=at)
        answer = send(podid, sent)
        t1 = time.time()
        if expected == ACCEPTED:
            ok = target.accepted(answer[0], answer[1])
        else:
            status, error_type, pattern, bound = expected
            ok = (answer[0], answer[1].get("__type")) == (status, error_type)
            if ok:
                assert_refused(answer, status, error_type, skew_verdict(pattern, bound, t0, t1, sent))
        if ok:
            return
        # A wrong answer within one second is wrong; a slower attempt proves nothing.
        assert t1 - t0 >= 1.0, (offset, answer)
        slow.append(round(t1 - t0, 2))
    pytest.fail(f"every attempt took over one second ({slow}): too loaded to judge a 1 s margin")
