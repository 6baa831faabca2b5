"""podid's cluster registry, /podid/v1/clusters, with raw signed requests."""

from __future__ import annotations

import datetime as dt
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from podid_helpers import (
    ACCOUNT_ID,
    DEFAULT_AUDIENCE,
    REGION,
    ROLE_ARN,
    DocumentServer,
    Podid,
    ServerProcess,
    assert_aws_error,
    closed_port,
    sample_jwks,
    unique,
)

CLUSTER_FIELDS = {"name", "issuer", "audience", "clusterArn", "keySource", "jwks", "createdAt", "modifiedAt",
                  "agentIdentity", "agentServiceAccount", "nodeBinding"}


@pytest.fixture(scope="module")
def podid(tmp_path_factory, keys_file, api_keys):
    """This module's server: its key documents come from a local http server, which a server
    fetches only with --allow-http-jwks (https otherwise)."""
    server = ServerProcess(tmp_path_factory.mktemp("server"), keys_file, extra_args=["--allow-http-jwks"]).start()
    yield Podid(server, api_keys)
    rc = server.stop()
    assert rc == 0, f"podid server exited with {rc} on SIGTERM:\n{server.log_tail()}"


@pytest.fixture
def docs():
    with DocumentServer() as server:
        yield server


def register(podid, role="admin", **body):
    return podid.request("POST", "/podid/v1/clusters", role=role, json_body=body)


def describe(podid, name, role="admin"):
    return podid.request("GET", f"/podid/v1/clusters/{name}", role=role)


def list_names(podid, role="admin"):
    resp = podid.request("GET", "/podid/v1/clusters", role=role)
    assert resp.status_code == 200, resp.text
    return [c["name"] for c in resp.json()["clusters"]]


# --------------------------------------------------------------------------
# registration


def test_register_inline_jwks_with_defaults(podid):
    name, jwks = unique("inline"), sample_jwks(2)
    before = dt.datetime.now(dt.timezone.utc).timestamp()
    resp = register(podid, name=name, issuer="https://oidc.example.com/id/ABC", jwks=jwks)
    assert resp.status_code == 200, resp.text
    assert resp.headers.get("x-amzn-requestid")
    c = resp.json()["cluster"]
    assert set(c) == CLUSTER_FIELDS, set(c) ^ CLUSTER_FIELDS
    assert c["name"] == name
    assert c["issuer"] == "https://oidc.example.com/id/ABC"
    assert c["audience"] == DEFAULT_AUDIENCE
    assert c["clusterArn"] == f"arn:aws:eks:{REGION}:{ACCOUNT_ID}:cluster/{name}"
    assert c["keySource"] == "inline"
    assert c["jwks"] == jwks
    assert abs(c["createdAt"] - before) < 60 and c["createdAt"] == c["modifiedAt"]

    got = describe(podid, name)
    assert got.status_code == 200 and got.json() == {"cluster": c}
    assert name in list_names(podid)


def test_register_with_audience_and_cluster_arn(podid):
    name = unique("custom")
    arn = f"arn:aws:eks:eu-west-1:999988887777:cluster/{name}"
    c = podid.register_cluster(name, audience="sts.example.com", clusterArn=arn)
    assert c["audience"] == "sts.example.com" and c["clusterArn"] == arn


def test_register_via_jwks_uri(podid, docs):
    jwks = sample_jwks()
    uri = docs.serve_json("/jwks", jwks)
    c = podid.register_cluster(unique("uri"), issuer="https://kubernetes.default.svc", jwksUri=uri)
    assert c["keySource"] == "uri"
    assert c["jwksUri"] == uri
    assert c["jwks"] == jwks
    assert docs.hits == ["/jwks"]


def test_register_via_discovery(podid, docs):
    jwks = sample_jwks(2)
    jwks_uri = docs.serve_json("/openid/v1/jwks", jwks)
    docs.serve_json("/.well-known/openid-configuration", {"issuer": docs.url, "jwks_uri": jwks_uri})
    name = unique("disc")
    c = podid.register_cluster(name, issuer=docs.url, discovery=True)
    assert c["keySource"] == "discovery"
    assert c["issuer"] == docs.url
    assert c["jwksUri"] == jwks_uri
    assert c["jwks"] == jwks
    assert docs.hits == ["/.well-known/openid-configuration", "/openid/v1/jwks"]
    assert describe(podid, name).json()["cluster"] == c


def test_list_is_sorted_by_name(podid):
    names = [unique("zz"), unique("aa"), unique("mm")]
    for n in names:
        podid.register_cluster(n)
    listed = list_names(podid)
    assert set(names) <= set(listed)
    assert listed == sorted(listed)


# --------------------------------------------------------------------------
# update


def test_update_audience_and_keys(podid, docs):
    c = podid.register_cluster()
    name = c["name"]
    resp = podid.request("PATCH", f"/podid/v1/clusters/{name}", json_body={"audience": "other-aud"})
    assert resp.status_code == 200, resp.text
    u = resp.json()["cluster"]
    assert u["audience"] == "other-aud"
    assert u["jwks"] == c["jwks"] and u["issuer"] == c["issuer"] and u["keySource"] == "inline"
    assert u["createdAt"] == c["createdAt"] and u["modifiedAt"] >= c["modifiedAt"]

    new_keys = sample_jwks(3)
    u = podid.request("PATCH", f"/podid/v1/clusters/{name}", json_body={"jwks": new_keys}).json()["cluster"]
    assert u["jwks"] == new_keys and u["audience"] == "other-aud"

    served = sample_jwks()
    uri = docs.serve_json("/keys", served)
    u = podid.request("PATCH", f"/podid/v1/clusters/{name}", json_body={"jwksUri": uri}).json()["cluster"]
    assert u["keySource"] == "uri" and u["jwksUri"] == uri and u["jwks"] == served

    u = podid.request("PATCH", f"/podid/v1/clusters/{name}",
                      json_body={"issuer": "https://new-issuer.example", "jwks": new_keys}).json()["cluster"]
    assert u["issuer"] == "https://new-issuer.example" and u["keySource"] == "inline" and "jwksUri" not in u

    assert describe(podid, name).json()["cluster"] == u


def test_update_errors(podid):
    name = podid.new_cluster()
    assert_aws_error(podid.request("PATCH", f"/podid/v1/clusters/{name}", json_body={}), 400, "InvalidParameterException")
    assert_aws_error(podid.request("PATCH", f"/podid/v1/clusters/{name}", json_body={"issuer": "nope"}), 400, "InvalidParameterException")
    assert_aws_error(podid.request("PATCH", f"/podid/v1/clusters/{name}", json_body={"jwks": {"keys": []}}), 400, "InvalidParameterException")
    assert_aws_error(podid.request("PATCH", f"/podid/v1/clusters/{unique('ghost')}", json_body={"audience": "x"}),
                     404, "ResourceNotFoundException")


# --------------------------------------------------------------------------
# registration errors


def test_duplicate_name_is_resource_in_use(podid):
    c = podid.register_cluster()
    resp = register(podid, name=c["name"], issuer="https://other.example", jwks=sample_jwks())
    assert_aws_error(resp, 409, "ResourceInUseException")
    assert describe(podid, c["name"]).json()["cluster"] == c


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"issuer": "https://i.example", "jwks": sample_jwks()}, id="no-name"),
        pytest.param({"name": "bad.name", "issuer": "https://i.example", "jwks": sample_jwks()}, id="bad-name"),
        pytest.param({"name": "x" * 101, "issuer": "https://i.example", "jwks": sample_jwks()}, id="long-name"),
        pytest.param({"name": "NAME", "jwks": sample_jwks()}, id="no-issuer"),
        pytest.param({"name": "NAME", "issuer": "https://i.example"}, id="no-key-source"),
        pytest.param({"name": "NAME", "issuer": "https://i.example", "jwks": sample_jwks(), "jwksUri": "https://i.example/jwks"}, id="jwks-and-uri"),
        pytest.param({"name": "NAME", "issuer": "https://i.example", "jwks": sample_jwks(), "discovery": True}, id="jwks-and-discovery"),
        pytest.param({"name": "NAME", "issuer": "https://i.example", "jwksUri": "https://i.example/jwks", "discovery": True}, id="uri-and-discovery"),
        pytest.param({"name": "NAME", "issuer": "https://i.example", "jwks": {"keys": []}}, id="jwks-empty"),
        pytest.param({"name": "NAME", "issuer": "https://i.example", "jwks": {"keys": [{"kid": "x"}]}}, id="jwks-no-kty"),
        pytest.param({"name": "NAME", "issuer": "https://i.example", "jwks": {"keys": [{"kty": 5}]}}, id="jwks-kty-number"),
        pytest.param({"name": "NAME", "issuer": "https://i.example", "jwks": [{"kty": "RSA"}]}, id="jwks-array"),
        pytest.param({"name": "NAME", "issuer": "https://i.example", "jwks": "keys"}, id="jwks-string"),
        pytest.param({"name": "NAME", "issuer": "not-a-url", "jwks": sample_jwks()}, id="issuer-not-url"),
        pytest.param({"name": "NAME", "issuer": "ftp://i.example", "jwks": sample_jwks()}, id="issuer-ftp"),
        pytest.param({"name": "NAME", "issuer": "https://", "jwks": sample_jwks()}, id="issuer-no-host"),
        pytest.param({"name": "NAME", "issuer": "https://i.example", "jwksUri": "file:///etc/passwd"}, id="uri-file"),
        pytest.param({"name": "NAME", "issuer": "https://i.example", "audience": "", "jwks": sample_jwks()}, id="audience-empty"),
        pytest.param({"name": "NAME", "issuer": "https://i.example", "clusterArn": "not an arn", "jwks": sample_jwks()}, id="bad-cluster-arn"),
    ],
)
def test_invalid_registrations(podid, body):
    body = dict(body)
    placeholder = body.get("name") == "NAME"
    if placeholder:
        body["name"] = unique("bad")
    resp = register(podid, **body)
    assert_aws_error(resp, 400, "InvalidParameterException")
    if placeholder:
        assert_aws_error(describe(podid, body["name"]), 404, "ResourceNotFoundException")


def test_http_key_urls_are_refused_without_allow_http_jwks(fresh_podid, docs):
    """A server started without --allow-http-jwks fetches keys over https only: an http JWKS URL
    or discovery issuer is refused before anything is fetched, with a message naming the rule."""
    uri = docs.serve_json("/jwks", sample_jwks())
    docs.serve_json("/.well-known/openid-configuration", {"issuer": docs.url, "jwks_uri": uri})
    for body in ({"issuer": "https://i.example", "jwksUri": uri}, {"issuer": docs.url, "discovery": True}):
        name = unique("http")
        resp = register(fresh_podid, name=name, **body)
        assert_aws_error(resp, 400, "InvalidParameterException")
        message = resp.json()["message"]
        assert "https://" in message and "--allow-http-jwks" in message, message
        assert_aws_error(describe(fresh_podid, name), 404, "ResourceNotFoundException")
    assert docs.hits == []


def test_key_documents_that_cannot_be_loaded(podid, docs):
    """Fetch failures are the caller's problem (InvalidParameterException), not a 5xx; the
    message is the same whatever the URL answered (status, body), which only the log says."""
    docs.serve_json("/missing-jwks-uri/.well-known/openid-configuration", {"issuer": "x"})
    docs.serve_raw("/not-json", b"<html>hello</html>", ctype="text/html")
    docs.serve_json("/not-a-jwks", {"keys": []})
    docs.serve_json("/server-error", {"error": "boom"}, status=500)
    cases = [
        {"issuer": "https://i.example", "jwksUri": f"http://127.0.0.1:{closed_port()}/jwks"},
        {"issuer": "https://i.example", "jwksUri": docs.url + "/404"},
        {"issuer": "https://i.example", "jwksUri": docs.url + "/not-json"},
        {"issuer": "https://i.example", "jwksUri": docs.url + "/not-a-jwks"},
        {"issuer": "https://i.example", "jwksUri": docs.url + "/server-error"},
        {"issuer": f"http://127.0.0.1:{closed_port()}", "discovery": True},
        {"issuer": docs.url + "/missing-jwks-uri", "discovery": True},
        {"issuer": docs.url + "/no-discovery-here", "discovery": True},
    ]
    messages = set()
    for body in cases:
        name = unique("fetch")
        resp = register(podid, name=name, **body)
        assert_aws_error(resp, 400, "InvalidParameterException")
        assert_aws_error(describe(podid, name), 404, "ResourceNotFoundException")
        messages.add(resp.json()["message"])
        assert "500" not in resp.text and "boom" not in resp.text and "hello" not in resp.text, resp.text
    assert len(messages) == 1, messages


# --------------------------------------------------------------------------
# deregistration


def test_deregister_empty_cluster(podid):
    c = podid.register_cluster()
    resp = podid.request("DELETE", f"/podid/v1/clusters/{c['name']}")
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"cluster": c}
    assert_aws_error(describe(podid, c["name"]), 404, "ResourceNotFoundException")
    assert c["name"] not in list_names(podid)
    assert_aws_error(podid.request("DELETE", f"/podid/v1/clusters/{c['name']}"), 404, "ResourceNotFoundException")


def test_deregister_with_associations_needs_force(podid):
    eks = podid.client()
    c = podid.register_cluster()
    name = c["name"]
    made = [podid.create_association(name, "default", f"sa-{i}") for i in range(3)]

    resp = podid.request("DELETE", f"/podid/v1/clusters/{name}")
    assert_aws_error(resp, 409, "ResourceInUseException")
    assert describe(podid, name).status_code == 200
    assert len(eks.list_pod_identity_associations(clusterName=name)["associations"]) == 3

    assert_aws_error(podid.request("DELETE", f"/podid/v1/clusters/{name}", query=[("force", "maybe")]),
                     400, "InvalidParameterException")

    resp = podid.request("DELETE", f"/podid/v1/clusters/{name}", query=[("force", "true")])
    assert resp.status_code == 200, resp.text
    assert resp.json()["cluster"]["name"] == name
    assert_aws_error(describe(podid, name), 404, "ResourceNotFoundException")
    with pytest.raises(eks.exceptions.ResourceNotFoundException):
        eks.describe_pod_identity_association(clusterName=name, associationId=made[0]["associationId"])
    with pytest.raises(eks.exceptions.ResourceNotFoundException):
        eks.list_pod_identity_associations(clusterName=name)

    # Registered again under the same name, the cluster starts empty: the old
    # associations are gone, not hidden, and their service accounts are free.
    podid.register_cluster(name)
    assert eks.list_pod_identity_associations(clusterName=name)["associations"] == []
    for a in made:
        with pytest.raises(eks.exceptions.ResourceNotFoundException):
            eks.describe_pod_identity_association(clusterName=name, associationId=a["associationId"])
        with pytest.raises(eks.exceptions.ResourceNotFoundException):
            eks.list_tags_for_resource(resourceArn=a["associationArn"])
    again = podid.create_association(name, "default", "sa-0")
    assert again["associationId"] not in {a["associationId"] for a in made}


def test_force_deregister_forgets_idempotency_tokens(podid):
    eks = podid.client()
    name = podid.new_cluster()
    req = dict(clusterName=name, namespace="default", serviceAccount="tok", roleArn=ROLE_ARN, clientRequestToken="reused-token")
    first = eks.create_pod_identity_association(**req)["association"]
    assert podid.request("DELETE", f"/podid/v1/clusters/{name}", query=[("force", "true")]).status_code == 200
    podid.register_cluster(name)
    second = eks.create_pod_identity_association(**req)["association"]
    assert second["associationId"] != first["associationId"]
    assert eks.describe_pod_identity_association(clusterName=name, associationId=second["associationId"])["association"] == second


# --------------------------------------------------------------------------
# roles


def test_reader_can_read_clusters_but_not_change_them(podid):
    c = podid.register_cluster()
    name = c["name"]
    assert describe(podid, name, role="reader").json()["cluster"] == c
    assert name in list_names(podid, role="reader")
    denied = [
        register(podid, role="reader", name=unique("r"), issuer="https://i.example", jwks=sample_jwks()),
        podid.request("PATCH", f"/podid/v1/clusters/{name}", role="reader", json_body={"audience": "x"}),
        podid.request("DELETE", f"/podid/v1/clusters/{name}", role="reader"),
        podid.request("DELETE", f"/podid/v1/clusters/{name}", role="reader", query=[("force", "true")]),
    ]
    for resp in denied:
        assert_aws_error(resp, 403, "AccessDeniedException")
    assert describe(podid, name).json()["cluster"] == c


def test_node_key_cannot_use_the_registry(podid):
    name = podid.new_cluster()
    for resp in (
        podid.request("GET", "/podid/v1/clusters", role="node"),
        describe(podid, name, role="node"),
        register(podid, role="node", name=unique("n"), issuer="https://i.example", jwks=sample_jwks()),
    ):
        assert_aws_error(resp, 403, "AccessDeniedException")


def test_unsigned_registry_request_is_refused(podid):
    resp = podid.request("GET", "/podid/v1/clusters", role=None)
    assert_aws_error(resp, 403, "MissingAuthenticationTokenException")


def test_concurrent_partial_updates_are_not_lost(podid):
    """PATCHes of different fields sent at the same moment must both apply
    (audience by one, clusterArn by the other): any serial order keeps both."""
    lost = []
    with ThreadPoolExecutor(max_workers=2) as pool:
        for round_ in range(20):
            c = podid.register_cluster()
            name = c["name"]
            start = threading.Barrier(2)
            new_arn = f"arn:aws:eks:eu-west-1:999988887777:cluster/{name}"

            def patch(i, name=name, start=start, new_arn=new_arn):
                start.wait(timeout=10)
                body = {"audience": "new-audience"} if i else {"clusterArn": new_arn}
                resp = podid.request("PATCH", f"/podid/v1/clusters/{name}", json_body=body)
                assert resp.status_code == 200, resp.text

            list(pool.map(patch, range(2)))
            final = describe(podid, name).json()["cluster"]
            if final["audience"] != "new-audience" or final["clusterArn"] != new_arn:
                lost.append((round_, final["audience"], final["clusterArn"]))
    assert lost == [], f"{len(lost)} of 20 rounds lost an update, e.g. {lost[:2]}"
