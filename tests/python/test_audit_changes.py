"""The audit trail of changes, against a real `podid server`: every
association and cluster change (the 8 operations) appears in
`podid audit list --kind change` with the key that made it (two admin keys
take turns), its request id (as boto3 and botocore's signer saw it), the
fields it changed and never the external id; the retention deletes old
events; `externalId` is shown to admin keys only; refusals before the broker
are counted by their AWS error type.

Oracles: the operations' names are EKS's (botocore's service model); request
ids come from the responses' `x-amzn-requestid`; the changed fields are what
the test sent.
"""

from __future__ import annotations

import json
import time

import botocore.exceptions
import pytest

from broker_helpers import metric, run_podid, wait_for
from podid_helpers import (
    ROLE_ARN,
    ROLE_ARN_2,
    ApiKey,
    Podid,
    ServerProcess,
    assert_aws_error,
    association_arn,
    make_keys,
    sample_jwks,
    signed_request,
    unique,
    write_keys_file,
)

#: A second admin key: changes alternate between the two.
ADMIN2 = "admin2"


@pytest.fixture(scope="module")
def keys():
    keys = make_keys()
    keys[ADMIN2] = ApiKey("PODIDADMINTWO", "admin-two-secret-0123456789abcdef", "admin")
    return keys


def _start(tmp_path_factory, keys, *args: str) -> tuple[ServerProcess, Podid]:
    workdir = tmp_path_factory.mktemp("audit-server")
    keys_file = write_keys_file(workdir / "keys.toml", keys.values())
    server = ServerProcess(workdir, keys_file, extra_args=args).start()
    return server, Podid(server, keys)


@pytest.fixture(scope="module")
def audited(tmp_path_factory, keys):
    server, api = _start(tmp_path_factory, keys)
    yield api
    assert server.stop() == 0, server.log_tail()


def _audit(api: Podid, home, *args: str, role: str = "reader") -> list[dict]:
    """`podid audit list -o json ARGS`, signed with `role`'s key."""
    proc = run_podid(["audit", "list", "-o", "json", *args], home, api.keys[role], api.endpoint)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    return json.loads(proc.stdout)["events"]


def _metrics(api: Podid) -> str:
    """The server's metrics, as a signed caller reads them on the API's
    address (unsigned, they are only on the metrics listener)."""
    resp = api.request("GET", "/metrics", role="admin")
    assert resp.status_code == 200, resp.text
    return resp.text


def _request_id(resp) -> str:
    rid = resp.headers.get("x-amzn-requestid")
    assert rid, dict(resp.headers)
    return rid


def test_every_change_is_audited_with_the_key_that_made_it(audited, keys, tmp_path):
    api = audited
    cluster = unique("audit")
    jwks = sample_jwks()
    kid = jwks["keys"][0]["kid"]
    done: dict[str, str] = {}  # operation -> request id

    def call(role: str, method: str, path: str, **kw):
        resp = signed_request(api.endpoint, method, path, key=keys[role], **kw)
        assert resp.status_code == 200, resp.text
        return resp

    # Clusters through botocore's signer (the request id is in the answer's headers).
    done["RegisterCluster"] = _request_id(call("admin", "POST", "/podid/v1/clusters", json_body={
        "name": cluster, "issuer": "https://oidc.audit.test", "jwks": jwks}))
    done["UpdateCluster"] = _request_id(call(ADMIN2, "PATCH", f"/podid/v1/clusters/{cluster}",
                                             json_body={"audience": "sts.amazonaws.com"}))
    # Associations through boto3's EKS client.
    sa = unique("sa")
    out = api.client("admin").create_pod_identity_association(
        clusterName=cluster, namespace="default", serviceAccount=sa, roleArn=ROLE_ARN,
        tags={"team": "blue", "env": "test"})
    assoc = out["association"]
    external_id = assoc["externalId"]
    done["CreatePodIdentityAssociation"] = out["ResponseMetadata"]["RequestId"]
    second = api.client(ADMIN2)
    out = second.update_pod_identity_association(
        clusterName=cluster, associationId=assoc["associationId"], roleArn=ROLE_ARN_2)
    done["UpdatePodIdentityAssociation"] = out["ResponseMetadata"]["RequestId"]
    arn = association_arn(cluster, assoc["associationId"])
    out = api.client("admin").tag_resource(resourceArn=arn, tags={"owner": "alice", "team": "green"})
    done["TagResource"] = out["ResponseMetadata"]["RequestId"]
    out = second.untag_resource(resourceArn=arn, tagKeys=["env"])
    done["UntagResource"] = out["ResponseMetadata"]["RequestId"]
    out = api.client("admin").delete_pod_identity_association(
        clusterName=cluster, associationId=assoc["associationId"])
    done["DeletePodIdentityAssociation"] = out["ResponseMetadata"]["RequestId"]
    # A refused change: the association is gone.
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        second.delete_pod_identity_association(clusterName=cluster, associationId=assoc["associationId"])
    refused_id = refused.value.response["ResponseMetadata"]["RequestId"]
    done["DeregisterCluster"] = _request_id(call(ADMIN2, "DELETE", f"/podid/v1/clusters/{cluster}"))

    def all_there():
        events = _audit(api, tmp_path, "--kind", "change", "--cluster-name", cluster)
        return events if len(events) == 9 else None

    events = wait_for(all_there, timeout=15, what="the 9 change events")
    assert [e["seq"] for e in events] == sorted((e["seq"] for e in events), reverse=True)
    by_id = {e["requestId"]: e for e in events}
    assert set(by_id) == set(done.values()) | {refused_id}
    ev = {op: by_id[rid] for op, rid in done.items()}
    first_admin, second_admin = keys["admin"].access_key_id, keys[ADMIN2].access_key_id
    callers = {
        "RegisterCluster": first_admin, "UpdateCluster": second_admin,
        "CreatePodIdentityAssociation": first_admin, "UpdatePodIdentityAssociation": second_admin,
        "TagResource": first_admin, "UntagResource": second_admin,
        "DeletePodIdentityAssociation": first_admin, "DeregisterCluster": second_admin,
    }
    for op, e in ev.items():
        assert (e["kind"], e["action"], e["outcome"]) == ("change", op, "succeeded"), e
        assert e["caller"] == callers[op], e
        assert e["cluster"] == cluster and "errorCode" not in e, e
        assert time.time() - 120 <= e["time"] <= time.time() + 5, e
        for pod_field in ("namespace", "serviceAccount", "podName", "podUid", "roleArn"):
            assert pod_field not in e, (pod_field, e)
    for op in ("CreatePodIdentityAssociation", "UpdatePodIdentityAssociation", "TagResource",
               "UntagResource", "DeletePodIdentityAssociation"):
        assert ev[op]["associationId"] == assoc["associationId"], ev[op]
    for op in ("RegisterCluster", "UpdateCluster", "DeregisterCluster"):
        assert "associationId" not in ev[op], ev[op]

    full = {"namespace": "default", "serviceAccount": sa, "roleArn": ROLE_ARN,
            "disableSessionTags": False, "tagKeys": ["env", "team"]}
    assert ("before" not in ev["CreatePodIdentityAssociation"]
            and ev["CreatePodIdentityAssociation"]["after"] == full), ev["CreatePodIdentityAssociation"]
    assert ev["UpdatePodIdentityAssociation"]["before"] == {"roleArn": ROLE_ARN}
    assert ev["UpdatePodIdentityAssociation"]["after"] == {"roleArn": ROLE_ARN_2}
    assert ev["TagResource"]["after"] == {"tagKeys": ["owner", "team"]} and "before" not in ev["TagResource"]
    assert ev["UntagResource"]["before"] == {"tagKeys": ["env"]} and "after" not in ev["UntagResource"]
    deleted = ev["DeletePodIdentityAssociation"]
    assert deleted["before"] == {**full, "roleArn": ROLE_ARN_2, "tagKeys": ["owner", "team"]}, deleted
    assert "after" not in deleted

    registered = {"issuer": "https://oidc.audit.test", "audience": "pods.eks.amazonaws.com",
                  "clusterArn": f"arn:aws:eks:us-east-1:111122223333:cluster/{cluster}",
                  "keySource": "inline", "keyIds": [kid], "agentIdentity": "key",
                  "agentServiceAccount": "podid-system/podid-agent", "nodeBinding": False}
    assert ev["RegisterCluster"]["after"] == registered and "before" not in ev["RegisterCluster"]
    assert ev["UpdateCluster"]["before"] == {"audience": "pods.eks.amazonaws.com"}
    assert ev["UpdateCluster"]["after"] == {"audience": "sts.amazonaws.com"}
    assert ev["DeregisterCluster"]["before"] == {**registered, "audience": "sts.amazonaws.com"}

    # The refused delete: who tried, what, and why.
    r = by_id[refused_id]
    assert (r["action"], r["caller"], r["outcome"], r["errorCode"]) == (
        "DeletePodIdentityAssociation", second_admin, "denied", "ResourceNotFoundException"), r

    # Never the external id (nor a key document): only key ids.
    text = json.dumps(events)
    assert external_id not in text and "externalId" not in text
    assert jwks["keys"][0]["n"] not in text

    # Changes are not decisions, and the table names the operations.
    assert _audit(api, tmp_path, "--kind", "credential", "--cluster-name", cluster) == []
    table = run_podid(["audit", "list", "--kind", "change", "--cluster-name", cluster], tmp_path,
                      keys["reader"], api.endpoint)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["TIME", "KIND", "OUTCOME", "CLUSTER", "WHAT", "ASSOCIATION", "ERROR", "CALLER"]
    assert len(lines) == 10
    assert any("UpdatePodIdentityAssociation roleArn: " + ROLE_ARN + " -> " + ROLE_ARN_2 in l for l in lines)
    bad = run_podid(["audit", "list", "--kind", "gossip"], tmp_path, keys["reader"], api.endpoint)
    assert bad.returncode != 0 and "credential or change" in bad.stderr, bad.stderr


def test_the_kind_filter_is_checked_by_the_server(audited):
    resp = audited.request("GET", "/podid/v1/audit", role="reader", query={"kind": "gossip"})
    body = assert_aws_error(resp, 400, "InvalidParameterException")
    assert "credential or change" in body["message"], body
    resp = audited.request("GET", "/podid/v1/audit", role="reader", query={"kind": "change"})
    assert resp.status_code == 200, resp.text
    assert all(e["kind"] == "change" for e in resp.json()["events"])


def test_external_id_is_shown_to_admin_keys_only(audited, keys):
    api = audited
    cluster = api.new_cluster()
    created = api.create_association(cluster)
    assert created["externalId"], created
    aid = created["associationId"]
    admin = api.client("admin").describe_pod_identity_association(clusterName=cluster, associationId=aid)
    assert admin["association"]["externalId"] == created["externalId"]
    reader = api.client("reader").describe_pod_identity_association(clusterName=cluster, associationId=aid)
    assert "externalId" not in reader["association"], reader["association"]
    assert reader["association"]["roleArn"] == created["roleArn"]
    # On the wire, not just in boto3's parse.
    raw = api.request("GET", f"/clusters/{cluster}/pod-identity-associations/{aid}", role="reader")
    assert raw.status_code == 200 and "externalId" not in raw.text and created["externalId"] not in raw.text
    raw = api.request("GET", f"/clusters/{cluster}/pod-identity-associations/{aid}", role="admin")
    assert raw.json()["association"]["externalId"] == created["externalId"]
    listed = api.request("GET", f"/clusters/{cluster}/pod-identity-associations", role="reader")
    assert listed.status_code == 200 and created["externalId"] not in listed.text
    # Admin answers of update and delete carry it.
    updated = api.client(ADMIN2).update_pod_identity_association(
        clusterName=cluster, associationId=aid, roleArn=ROLE_ARN_2)
    assert updated["association"]["externalId"] == created["externalId"]


def test_refusals_before_the_broker_are_counted_by_reason(audited, keys):
    api = audited
    cluster = api.new_cluster()
    path = f"/clusters/{cluster}/pod-identity-associations"
    name = "podid_server_refusals_total"
    before = _metrics(api)
    cases = [
        # (reason, how many, request)
        ("InvalidSignatureException", 2,
         lambda: signed_request(api.endpoint, "GET", path, key=keys["admin"], secret_override="wrong-secret")),
        ("UnrecognizedClientException", 1,
         lambda: signed_request(api.endpoint, "GET", path, key=keys["admin"], access_key_override="PODIDNOBODY")),
        ("MissingAuthenticationTokenException", 1, lambda: signed_request(api.endpoint, "GET", path, key=None)),
        ("InvalidRequestException", 3,
         lambda: api.request("POST", path, body="{not json", headers={"Content-Type": "application/json"})),
        ("AccessDeniedException", 1,
         lambda: api.request("POST", path, role="reader", json_body={"namespace": "a", "serviceAccount": "b",
                                                                     "roleArn": ROLE_ARN})),
        ("ResourceNotFoundException", 1, lambda: api.request("GET", path + "/a-00000000000000000")),
        ("InvalidParameterException", 1, lambda: api.request("GET", path, query={"maxResults": "x"})),
    ]
    for reason, times, send in cases:
        for _ in range(times):
            resp = send()
            assert resp.headers.get("x-amzn-errortype") == reason, (reason, resp.status_code, resp.text)
    after = _metrics(api)
    for reason, times, _ in cases:
        delta = metric(after, name, reason=reason) - metric(before, name, reason=reason)
        assert delta == times, (reason, delta, [l for l in after.splitlines() if l.startswith(name)])
    ok_before = metric(after, name)
    assert api.request("GET", path).status_code == 200
    assert metric(_metrics(api), name) == ok_before, "an answered request was counted as refused"


def test_retention_deletes_events_older_than_it(tmp_path_factory, keys, tmp_path):
    server, api = _start(tmp_path_factory, keys, "--audit-retention", "2s")
    try:
        cluster = api.new_cluster()

        def listed():
            return _audit(api, tmp_path, "--kind", "change", "--cluster-name", cluster)

        [event] = wait_for(listed, timeout=15, what="the registration's event")
        assert event["action"] == "RegisterCluster"
        # Pruned every second (a tenth of the retention, at least 1 s): gone
        # within the retention plus a few prunings.
        wait_for(lambda: listed() == [], timeout=20, interval=0.2, what="the event's deletion")
        assert time.time() - event["time"] >= 2, "deleted before its retention ran out"
        assert metric(_metrics(api), "podid_broker_audit_pruned_total") >= 1
        assert "audit events past the retention deleted" in server.log_path.read_text()
    finally:
        assert server.stop() == 0, server.log_tail()


def test_retention_forever_keeps_events_and_bad_values_are_refused(tmp_path_factory, keys, tmp_path):
    server, api = _start(tmp_path_factory, keys, "--audit-retention", "forever")
    try:
        api.new_cluster()
        assert metric(_metrics(api), "podid_broker_audit_pruned_total") == 0
        assert "audit retention" not in server.log_path.read_text()
    finally:
        assert server.stop() == 0, server.log_tail()
    with pytest.raises(RuntimeError, match="exited"):
        _start(tmp_path_factory, keys, "--audit-retention", "30w")
    with pytest.raises(RuntimeError, match="exited"):
        _start(tmp_path_factory, keys, "--audit-mode", "sometimes")
