"""The HTTP surface with raw signed requests: malformed input, authentication,
authorisation, health and metrics."""

from __future__ import annotations

import datetime as dt
import json
from urllib.parse import quote

import pytest
import requests

from podid_helpers import (
    ROLE_ARN,
    assert_aws_error,
    assert_client_error,
    association_arn,
)


def assoc_path(cluster: str, association_id: str | None = None) -> str:
    path = f"/clusters/{quote(cluster, safe='')}/pod-identity-associations"
    if association_id is not None:
        path += "/" + association_id
    return path


def valid_body(sa: str = "edge") -> dict:
    return {"namespace": "default", "serviceAccount": sa, "roleArn": ROLE_ARN}


# --------------------------------------------------------------------------
# malformed requests: always a 4xx in the AWS shape, never a 5xx


def test_malformed_json_body(podid, cluster):
    for body in (b"{not json", b'{"namespace": "default",', b"[1,2,3", b"\xff\xfe"):
        resp = podid.request("POST", assoc_path(cluster), body=body)
        assert_aws_error(resp, 400, {"InvalidRequestException", "InvalidParameterException", "SerializationException"})
    # Well-formed JSON of the wrong shape is refused too.
    for body in (b'{"namespace": 5, "serviceAccount": "x", "roleArn": "y"}', b"[]", b'"str"', b"null"):
        resp = podid.request("POST", assoc_path(cluster), body=body)
        assert 400 <= resp.status_code < 500, (body, resp.status_code, resp.text)
        assert_aws_error(resp, resp.status_code, {"InvalidRequestException", "InvalidParameterException", "SerializationException"})
    assert podid.client().list_pod_identity_associations(clusterName=cluster)["associations"] == []


def test_wrong_content_type_is_415(podid, cluster):
    resp = podid.request(
        "POST", assoc_path(cluster), body=json.dumps(valid_body()), headers={"Content-Type": "text/plain"}
    )
    assert_aws_error(resp, 415, "UnsupportedMediaTypeException")
    assert podid.client().list_pod_identity_associations(clusterName=cluster)["associations"] == []
    # The same body as JSON is fine; +json and a charset parameter are JSON too.
    for ctype in ("application/json; charset=utf-8", "application/vnd.api+json"):
        ok = podid.request("POST", assoc_path(cluster), body=json.dumps(valid_body(f"ct-{len(ctype)}")),
                           headers={"Content-Type": ctype})
        assert ok.status_code == 200, ok.text


def test_one_mebibyte_body_is_413(podid, cluster):
    body = b'{"namespace":"' + b"a" * (1024 * 1024) + b'"}'
    resp = podid.request("POST", assoc_path(cluster), body=body)
    assert_aws_error(resp, 413, "RequestEntityTooLargeException")
    # Also when the size is not announced up front (chunked).
    def chunks():
        for _ in range(16):
            yield b"a" * 65536

    resp = requests.post(podid.endpoint + assoc_path(cluster), data=chunks(),
                         headers={"Content-Type": "application/json"}, timeout=15)
    assert_aws_error(resp, 413, "RequestEntityTooLargeException")


@pytest.mark.parametrize(
    "method,path",
    [
        ("GET", "/nope"),
        ("GET", "/"),
        ("POST", "/clusters"),
        ("GET", "/clusters/blue"),
        ("GET", "/clusters/blue/pod-identity-associations/a-0123456789abcdefg/extra"),
        ("POST", "/podid/v1/nothing"),
    ],
)
def test_unknown_path_is_404_unknown_operation(podid, method, path):
    resp = podid.request(method, path)
    assert_aws_error(resp, 404, "UnknownOperationException")


@pytest.mark.parametrize(
    "method,path",
    [
        ("PUT", "/clusters/blue/pod-identity-associations"),
        ("DELETE", "/clusters/blue/pod-identity-associations"),
        ("PATCH", "/clusters/blue/pod-identity-associations/a-0123456789abcdefg"),
        ("PUT", "/tags/" + quote(association_arn("blue", "a-0123456789abcdefg"), safe="")),
        ("PUT", "/podid/v1/clusters"),
        ("POST", "/podid/v1/clusters/blue"),
    ],
)
def test_wrong_method_on_a_known_path_is_a_4xx_aws_error(podid, method, path):
    resp = podid.request(method, path)
    assert 400 <= resp.status_code < 500, (resp.status_code, resp.text)
    assert_aws_error(resp, resp.status_code, {"UnknownOperationException", "InvalidRequestException"})


def test_odd_paths_never_cause_a_5xx(podid, cluster):
    cases = [
        "/clusters/%ff/pod-identity-associations",
        "/clusters/%00/pod-identity-associations",
        "/clusters//pod-identity-associations",
        f"/clusters/{cluster}/pod-identity-associations/%ff",
        "/tags/%ff",
        "/tags/arn%3Aaws",
        "/tags/",
        "/podid/v1/clusters/%ff",
        f"/clusters/{cluster}/pod-identity-associations?maxResults=%ff",
        f"/clusters/{cluster}/pod-identity-associations?namespace=%00",
    ]
    for raw in cases:
        resp = podid.request("GET", raw)  # the query, if any, goes out (and is signed) as written
        assert 400 <= resp.status_code < 500, (raw, resp.status_code, resp.text)
        assert_aws_error(resp, resp.status_code, {
            "InvalidParameterException", "ResourceNotFoundException", "UnknownOperationException",
            # botocore and the server canonicalise an invalid UTF-8 escape differently
            "InvalidSignatureException",
        })


def test_request_ids_on_successes_and_errors(podid, cluster):
    ok1 = podid.request("GET", assoc_path(cluster))
    ok2 = podid.request("GET", assoc_path(cluster))
    assert ok1.status_code == ok2.status_code == 200
    ids = {ok1.headers.get("x-amzn-requestid"), ok2.headers.get("x-amzn-requestid")}
    assert None not in ids and len(ids) == 2
    assert "x-amzn-errortype" not in ok1.headers
    assert ok1.headers["content-type"].startswith("application/json")
    err = podid.request("GET", assoc_path(cluster, "a-zzzzzzzzzzzzzzzzz"))
    assert_aws_error(err, 404, "ResourceNotFoundException")


# --------------------------------------------------------------------------
# authentication


def test_unsigned_request_is_missing_authentication_token(podid, cluster):
    resp = podid.request("GET", assoc_path(cluster), role=None)
    assert_aws_error(resp, 403, "MissingAuthenticationTokenException")
    resp = podid.request("POST", assoc_path(cluster), role=None, json_body=valid_body())
    assert_aws_error(resp, 403, "MissingAuthenticationTokenException")
    resp = requests.get(podid.endpoint + assoc_path(cluster), headers={"Authorization": "Basic YWJjOmRlZg=="}, timeout=10)
    assert_aws_error(resp, 403, "MissingAuthenticationTokenException")


def test_unknown_access_key_is_unrecognized_client(podid, cluster):
    resp = podid.request("GET", assoc_path(cluster), access_key_override="PODIDNOBODY")
    assert_aws_error(resp, 403, "UnrecognizedClientException")
    # Same for a key that exists in no keys file but looks like an AWS one.
    resp = podid.request("GET", assoc_path(cluster), access_key_override="AKIAIOSFODNN7EXAMPLE")
    assert_aws_error(resp, 403, "UnrecognizedClientException")


def test_wrong_secret_is_invalid_signature(podid, cluster):
    resp = podid.request("GET", assoc_path(cluster), secret_override="definitely-not-the-secret-0000")
    assert_aws_error(resp, 403, "InvalidSignatureException")
    assert podid.keys["admin"].secret_access_key not in resp.text


def test_body_changed_after_signing_is_invalid_signature(podid, cluster):
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    key = podid.keys["admin"]
    url = podid.endpoint + assoc_path(cluster)
    signed_body = json.dumps(valid_body("signed")).encode()
    req = AWSRequest(method="POST", url=url, data=signed_body, headers={"Content-Type": "application/json"})
    SigV4Auth(Credentials(key.access_key_id, key.secret_access_key), "eks", "us-east-1").add_auth(req)
    resp = requests.post(url, data=json.dumps(valid_body("tampered")).encode(), headers=dict(req.headers.items()), timeout=10)
    assert_aws_error(resp, 403, "InvalidSignatureException")
    assert podid.client().list_pod_identity_associations(clusterName=cluster)["associations"] == []


@pytest.mark.parametrize("minutes", [6, -6, 60])
def test_clock_skew_beyond_five_minutes_is_invalid_signature(podid, cluster, minutes):
    when = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) + dt.timedelta(minutes=minutes)
    resp = podid.request("GET", assoc_path(cluster), signed_at=when)
    assert_aws_error(resp, 403, "InvalidSignatureException")


@pytest.mark.parametrize("minutes", [4, -4])
def test_clock_skew_within_five_minutes_is_accepted(podid, cluster, minutes):
    when = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) + dt.timedelta(minutes=minutes)
    resp = podid.request("GET", assoc_path(cluster), signed_at=when)
    assert resp.status_code == 200, resp.text


def test_only_the_servers_region_verifies(podid, cluster):
    """Issue 13: the scope names the server's --region (test_sigv4.py checks AWS's words)."""
    resp = podid.request("GET", assoc_path(cluster), region="us-east-1")
    assert resp.status_code == 200, resp.text
    for region in ("eu-west-1", "ap-northeast-1"):
        resp = podid.request("GET", assoc_path(cluster), region=region)
        assert_aws_error(resp, 403, "InvalidSignatureException")


def test_signed_query_strings_with_special_characters(podid, cluster):
    """The canonical query (sorted, percent-encoded) is computed as clients do."""
    resp = podid.request(
        "GET", assoc_path(cluster), query=[("serviceAccount", "a.b"), ("namespace", "default"), ("maxResults", "5")]
    )
    assert resp.status_code == 200, resp.text
    # A nextToken full of '=' '+' '/' survives signing and is then judged invalid.
    resp = podid.request("GET", assoc_path(cluster), query=[("nextToken", "a+b/c==")])
    assert_aws_error(resp, 400, "InvalidParameterException")


# --------------------------------------------------------------------------
# authorisation


def test_reader_may_read_but_not_write(podid, cluster, eks_reader):
    admin = podid.client()
    a = podid.create_association(cluster, tags={"t": "1"})
    aid, arn = a["associationId"], a["associationArn"]

    # Everything the admin saw but the external id, shown to admin keys only.
    seen_by_admin = {k: v for k, v in a.items() if k != "externalId"}
    assert eks_reader.describe_pod_identity_association(clusterName=cluster, associationId=aid)["association"] == seen_by_admin
    listed = eks_reader.list_pod_identity_associations(clusterName=cluster)["associations"]
    assert [s["associationId"] for s in listed] == [aid]
    assert eks_reader.list_tags_for_resource(resourceArn=arn)["tags"] == {"t": "1"}

    writes = [
        lambda: eks_reader.create_pod_identity_association(clusterName=cluster, namespace="default", serviceAccount="r", roleArn=ROLE_ARN),
        lambda: eks_reader.update_pod_identity_association(clusterName=cluster, associationId=aid, roleArn=ROLE_ARN),
        lambda: eks_reader.delete_pod_identity_association(clusterName=cluster, associationId=aid),
        lambda: eks_reader.tag_resource(resourceArn=arn, tags={"x": "y"}),
        lambda: eks_reader.untag_resource(resourceArn=arn, tagKeys=["t"]),
        # Authorisation comes before any lookup: no existence oracle.
        lambda: eks_reader.create_pod_identity_association(clusterName="no-such-cluster", namespace="default", serviceAccount="r", roleArn=ROLE_ARN),
    ]
    for call in writes:
        with pytest.raises(eks_reader.exceptions.AccessDeniedException) as ei:
            call()
        assert_client_error(ei, 403, "AccessDeniedException")
    assert admin.describe_pod_identity_association(clusterName=cluster, associationId=aid)["association"] == a


def test_node_key_may_not_use_the_association_api(podid, cluster, eks_node):
    a = podid.create_association(cluster)
    calls = [
        lambda: eks_node.list_pod_identity_associations(clusterName=cluster),
        lambda: eks_node.describe_pod_identity_association(clusterName=cluster, associationId=a["associationId"]),
        lambda: eks_node.list_tags_for_resource(resourceArn=a["associationArn"]),
        lambda: eks_node.create_pod_identity_association(clusterName=cluster, namespace="default", serviceAccount="n", roleArn=ROLE_ARN),
        lambda: eks_node.delete_pod_identity_association(clusterName=cluster, associationId=a["associationId"]),
    ]
    for call in calls:
        with pytest.raises(eks_node.exceptions.AccessDeniedException) as ei:
            call()
        assert_client_error(ei, 403, "AccessDeniedException")
    for path in ("/podid/v1/clusters", f"/podid/v1/clusters/{cluster}"):
        assert_aws_error(podid.request("GET", path, role="node"), 403, "AccessDeniedException")


# --------------------------------------------------------------------------
# health and metrics


def test_health_endpoints_need_no_auth(podid):
    for path in ("/healthz", "/readyz"):
        resp = requests.get(podid.endpoint + path, timeout=10)
        assert resp.status_code == 200, (path, resp.text)
        assert resp.text.strip() == "ok"
        # Signed is fine too.
        assert podid.request("GET", path).status_code == 200


def test_metrics_on_the_api_port_need_a_signed_request(podid):
    """`/metrics` is unsigned only on --metrics-listen; on the API port it is
    an API call like any other (issue 13 item 8)."""
    unsigned = requests.get(podid.endpoint + "/metrics", timeout=10)
    assert_aws_error(unsigned, 403, "MissingAuthenticationTokenException")
    for role in ("admin", "reader", "node"):
        signed = podid.request("GET", "/metrics", role=role)
        assert signed.status_code == 200, (role, signed.text)
        assert "podid_http_requests_total" in signed.text


def test_metrics_count_requests_by_operation_and_status(podid, cluster):
    resp = requests.get(podid.metrics_endpoint + "/metrics", timeout=10)
    assert resp.status_code == 200
    assert "podid_http_requests_total" in resp.text
    assert "podid_http_request_duration_seconds" in resp.text

    before = podid.metrics()
    eks = podid.client()
    for _ in range(3):
        eks.list_pod_identity_associations(clusterName=cluster)
    a = podid.create_association(cluster)
    for _ in range(2):
        with pytest.raises(eks.exceptions.ResourceNotFoundException):
            eks.describe_pod_identity_association(clusterName=cluster, associationId="a-zzzzzzzzzzzzzzzzz")
    eks.describe_pod_identity_association(clusterName=cluster, associationId=a["associationId"])
    podid.request("GET", assoc_path(cluster), role=None)  # 403, unauthenticated
    with pytest.raises(eks.exceptions.ResourceInUseException):
        podid.create_association(cluster, a["namespace"], a["serviceAccount"])
    after = podid.metrics()

    def delta(op, status):
        return after.get((op, str(status)), 0) - before.get((op, str(status)), 0)

    assert delta("ListPodIdentityAssociations", 200) == 3
    assert delta("CreatePodIdentityAssociation", 200) == 1
    assert delta("CreatePodIdentityAssociation", 409) == 1
    assert delta("DescribePodIdentityAssociation", 404) == 2
    assert delta("DescribePodIdentityAssociation", 200) == 1
    assert delta("unknown", 403) == 1
