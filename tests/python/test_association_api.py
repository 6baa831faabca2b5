"""The EKS pod-identity-association API through boto3 (and raw signed requests
where botocore would refuse to send the request itself)."""

from __future__ import annotations

import datetime as dt
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import botocore.exceptions
import pytest

from podid_helpers import (
    ACCOUNT_ID,
    ASSOCIATION_ID_RE,
    POLICY,
    REGION,
    ROLE_ARN,
    ROLE_ARN_2,
    TARGET_ROLE_ARN,
    assert_aws_error,
    assert_client_error,
    association_arn,
    unique,
)

FULL_FIELDS = {
    "clusterName",
    "namespace",
    "serviceAccount",
    "roleArn",
    "associationArn",
    "associationId",
    "tags",
    "createdAt",
    "modifiedAt",
    "disableSessionTags",
    "targetRoleArn",
    "externalId",
    "policy",
}
SUMMARY_FIELDS = {"clusterName", "namespace", "serviceAccount", "associationArn", "associationId"}


def strip_meta(resp: dict) -> dict:
    return {k: v for k, v in resp.items() if k != "ResponseMetadata"}


def assoc_path(cluster: str, association_id: str | None = None) -> str:
    path = f"/clusters/{quote(cluster, safe='')}/pod-identity-associations"
    if association_id is not None:
        path += "/" + quote(association_id, safe="")
    return path


def tags_path(arn: str) -> str:
    return "/tags/" + quote(arn, safe="")


# --------------------------------------------------------------------------
# round trips


def test_create_with_every_field_and_describe(eks, cluster):
    before = dt.datetime.now(dt.timezone.utc)
    created = eks.create_pod_identity_association(
        clusterName=cluster,
        namespace="default",
        serviceAccount="boto3",
        roleArn=ROLE_ARN,
        tags={"team": "ml", "env": "dev"},
        disableSessionTags=True,
        policy=POLICY,
        targetRoleArn=TARGET_ROLE_ARN,
    )
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 200
    a = created["association"]
    assert set(a) == FULL_FIELDS, set(a) ^ FULL_FIELDS
    assert a["clusterName"] == cluster
    assert a["namespace"] == "default"
    assert a["serviceAccount"] == "boto3"
    assert a["roleArn"] == ROLE_ARN
    assert a["targetRoleArn"] == TARGET_ROLE_ARN
    assert a["disableSessionTags"] is True
    assert json.loads(a["policy"]) == json.loads(POLICY)
    assert a["tags"] == {"team": "ml", "env": "dev"}
    assert ASSOCIATION_ID_RE.match(a["associationId"]), a["associationId"]
    assert a["associationArn"] == (
        f"arn:aws:eks:{REGION}:{ACCOUNT_ID}:podidentityassociation/{cluster}/{a['associationId']}"
    )
    assert isinstance(a["externalId"], str) and len(a["externalId"]) >= 8
    for field in ("createdAt", "modifiedAt"):
        assert isinstance(a[field], dt.datetime) and a[field].tzinfo is not None
        assert abs((a[field] - before).total_seconds()) < 60, a[field]
    assert a["createdAt"] == a["modifiedAt"]

    described = eks.describe_pod_identity_association(
        clusterName=cluster, associationId=a["associationId"]
    )
    assert described["association"] == a


def test_create_minimal_has_defaults(eks, cluster):
    a = eks.create_pod_identity_association(
        clusterName=cluster, namespace="kube-system", serviceAccount="my.sa-1", roleArn=ROLE_ARN
    )["association"]
    assert a["tags"] == {}
    assert a["disableSessionTags"] is False
    assert "targetRoleArn" not in a and "policy" not in a and "ownerArn" not in a
    assert a["externalId"]
    other = eks.create_pod_identity_association(
        clusterName=cluster, namespace="kube-system", serviceAccount="other", roleArn=ROLE_ARN
    )["association"]
    assert other["associationId"] != a["associationId"]
    assert other["externalId"] != a["externalId"]


def test_list_with_namespace_and_service_account_filters(eks, podid, cluster):
    made = {}
    for ns, sa in [("ns-a", "x"), ("ns-a", "y"), ("ns-b", "x")]:
        made[(ns, sa)] = podid.create_association(cluster, ns, sa)["associationId"]

    def ids(**filters):
        out = eks.list_pod_identity_associations(clusterName=cluster, **filters)
        assert "nextToken" not in out
        for s in out["associations"]:
            assert set(s) == SUMMARY_FIELDS, s
            assert s["clusterName"] == cluster
            assert s["associationArn"] == association_arn(cluster, s["associationId"])
        return {(s["namespace"], s["serviceAccount"], s["associationId"]) for s in out["associations"]}

    every = {(ns, sa, i) for (ns, sa), i in made.items()}
    assert ids() == every
    assert ids(namespace="ns-a") == {t for t in every if t[0] == "ns-a"}
    assert ids(serviceAccount="x") == {t for t in every if t[1] == "x"}
    assert ids(namespace="ns-b", serviceAccount="x") == {("ns-b", "x", made[("ns-b", "x")])}
    assert ids(namespace="nothing-here") == set()


def test_list_only_shows_the_named_cluster(eks, podid):
    blue, green = podid.new_cluster(), podid.new_cluster()
    a = podid.create_association(blue, "default", "shared")
    b = podid.create_association(green, "default", "shared")  # same triple, other cluster
    assert a["associationId"] != b["associationId"]
    listed = eks.list_pod_identity_associations(clusterName=blue)["associations"]
    assert [s["associationId"] for s in listed] == [a["associationId"]]


def test_update_role_target_and_session_tags(eks, podid, cluster):
    a = podid.create_association(cluster, "default", "web")
    aid = a["associationId"]

    u1 = eks.update_pod_identity_association(clusterName=cluster, associationId=aid, roleArn=ROLE_ARN_2)["association"]
    assert u1["roleArn"] == ROLE_ARN_2
    assert u1["createdAt"] == a["createdAt"]
    assert u1["modifiedAt"] >= a["modifiedAt"]
    assert u1["externalId"] == a["externalId"]
    assert u1["associationId"] == aid and u1["namespace"] == "default" and u1["serviceAccount"] == "web"

    u2 = eks.update_pod_identity_association(clusterName=cluster, associationId=aid, targetRoleArn=TARGET_ROLE_ARN)["association"]
    assert u2["targetRoleArn"] == TARGET_ROLE_ARN and u2["roleArn"] == ROLE_ARN_2

    u3 = eks.update_pod_identity_association(clusterName=cluster, associationId=aid, disableSessionTags=True)["association"]
    assert u3["disableSessionTags"] is True and u3["targetRoleArn"] == TARGET_ROLE_ARN

    u4 = eks.update_pod_identity_association(
        clusterName=cluster, associationId=aid, disableSessionTags=True, policy=POLICY
    )["association"]
    assert json.loads(u4["policy"]) == json.loads(POLICY)

    # An empty targetRoleArn / policy removes it (EKS semantics).
    u5 = eks.update_pod_identity_association(clusterName=cluster, associationId=aid, targetRoleArn="", policy="")["association"]
    assert "targetRoleArn" not in u5 and "policy" not in u5
    assert u5["disableSessionTags"] is True and u5["roleArn"] == ROLE_ARN_2

    u6 = eks.update_pod_identity_association(clusterName=cluster, associationId=aid, disableSessionTags=False)["association"]
    assert u6["disableSessionTags"] is False

    described = eks.describe_pod_identity_association(clusterName=cluster, associationId=aid)["association"]
    assert described == u6


def test_update_cannot_leave_a_policy_without_disabled_session_tags(eks, podid, cluster):
    a = podid.create_association(cluster, disableSessionTags=True, policy=POLICY)
    with pytest.raises(eks.exceptions.InvalidParameterException) as ei:
        eks.update_pod_identity_association(
            clusterName=cluster, associationId=a["associationId"], disableSessionTags=False
        )
    assert_client_error(ei, 400, "InvalidParameterException")
    unchanged = eks.describe_pod_identity_association(clusterName=cluster, associationId=a["associationId"])["association"]
    assert unchanged["disableSessionTags"] is True and unchanged["policy"] == a["policy"]


def test_delete_returns_the_association_then_it_is_gone(eks, podid, cluster):
    a = podid.create_association(cluster, "default", "gone", tags={"k": "v"})
    aid = a["associationId"]
    deleted = eks.delete_pod_identity_association(clusterName=cluster, associationId=aid)
    assert deleted["association"] == a

    for call in (
        lambda: eks.describe_pod_identity_association(clusterName=cluster, associationId=aid),
        lambda: eks.delete_pod_identity_association(clusterName=cluster, associationId=aid),
        lambda: eks.update_pod_identity_association(clusterName=cluster, associationId=aid, roleArn=ROLE_ARN_2),
        lambda: eks.list_tags_for_resource(resourceArn=a["associationArn"]),
    ):
        with pytest.raises(eks.exceptions.ResourceNotFoundException) as ei:
            call()
        assert_client_error(ei, 404, "ResourceNotFoundException")
    listed = eks.list_pod_identity_associations(clusterName=cluster)["associations"]
    assert aid not in {s["associationId"] for s in listed}
    # The service account is free again.
    again = podid.create_association(cluster, "default", "gone")
    assert again["associationId"] != aid


def test_tag_untag_and_list_tags(eks, podid, cluster):
    a = podid.create_association(cluster, tags={"team": "ml"})
    arn = a["associationArn"]
    assert eks.list_tags_for_resource(resourceArn=arn)["tags"] == {"team": "ml"}

    out = eks.tag_resource(resourceArn=arn, tags={"env": "dev", "team": "data"})
    assert strip_meta(out) == {}
    assert eks.list_tags_for_resource(resourceArn=arn)["tags"] == {"team": "data", "env": "dev"}

    out = eks.untag_resource(resourceArn=arn, tagKeys=["team", "not-there"])
    assert strip_meta(out) == {}
    assert eks.list_tags_for_resource(resourceArn=arn)["tags"] == {"env": "dev"}

    described = eks.describe_pod_identity_association(clusterName=cluster, associationId=a["associationId"])
    assert described["association"]["tags"] == {"env": "dev"}


def test_tags_of_unknown_or_foreign_resources(eks, cluster):
    unknown = association_arn(cluster, "a-0000000000000000z")
    with pytest.raises(eks.exceptions.ResourceNotFoundException) as ei:
        eks.tag_resource(resourceArn=unknown, tags={"a": "b"})
    assert_client_error(ei, 404, "ResourceNotFoundException")
    with pytest.raises(eks.exceptions.ResourceNotFoundException):
        eks.list_tags_for_resource(resourceArn=unknown)
    foreign = unknown.replace(f":{REGION}:", ":eu-west-1:")
    with pytest.raises(eks.exceptions.ResourceNotFoundException):
        eks.list_tags_for_resource(resourceArn=foreign)
    for bad in (
        "not-an-arn",
        f"arn:aws:eks:{REGION}:{ACCOUNT_ID}:cluster/{cluster}",
        f"arn:aws:eks:{REGION}:{ACCOUNT_ID}:podidentityassociation/{cluster}/a-short",
    ):
        with pytest.raises(eks.exceptions.InvalidParameterException) as ei:
            eks.list_tags_for_resource(resourceArn=bad)
        assert_client_error(ei, 400, "InvalidParameterException")


def test_tagging_past_fifty_tags_in_total_is_refused(eks, podid, cluster):
    a = podid.create_association(cluster, tags={f"k{i}": "v" for i in range(49)})
    eks.tag_resource(resourceArn=a["associationArn"], tags={"k49": "v"})  # 50: fine
    with pytest.raises(eks.exceptions.InvalidParameterException) as ei:
        eks.tag_resource(resourceArn=a["associationArn"], tags={"one-too-many": "v"})
    assert_client_error(ei, 400, "InvalidParameterException")
    assert len(eks.list_tags_for_resource(resourceArn=a["associationArn"])["tags"]) == 50


# --------------------------------------------------------------------------
# idempotency and uniqueness


def test_create_idempotency_token(eks, cluster):
    req = dict(clusterName=cluster, namespace="default", serviceAccount="idem", roleArn=ROLE_ARN,
               tags={"a": "b"}, clientRequestToken="token-create-1")
    first = eks.create_pod_identity_association(**req)["association"]
    second = eks.create_pod_identity_association(**req)["association"]
    assert second["associationId"] == first["associationId"]
    assert second == first
    listed = eks.list_pod_identity_associations(clusterName=cluster, serviceAccount="idem")["associations"]
    assert len(listed) == 1

    with pytest.raises(eks.exceptions.InvalidRequestException) as ei:
        eks.create_pod_identity_association(**{**req, "roleArn": ROLE_ARN_2})
    assert_client_error(ei, 400, "InvalidRequestException")
    with pytest.raises(eks.exceptions.InvalidRequestException):
        eks.create_pod_identity_association(**{**req, "serviceAccount": "idem-other"})
    assert eks.describe_pod_identity_association(
        clusterName=cluster, associationId=first["associationId"]
    )["association"]["roleArn"] == ROLE_ARN


def test_update_idempotency_token(eks, podid, cluster):
    a = podid.create_association(cluster)
    req = dict(clusterName=cluster, associationId=a["associationId"], roleArn=ROLE_ARN_2,
               clientRequestToken="token-update-1")
    first = eks.update_pod_identity_association(**req)["association"]
    replay = eks.update_pod_identity_association(**req)["association"]
    assert replay == first
    with pytest.raises(eks.exceptions.InvalidRequestException) as ei:
        eks.update_pod_identity_association(**{**req, "roleArn": ROLE_ARN})
    assert_client_error(ei, 400, "InvalidRequestException")
    now = eks.describe_pod_identity_association(clusterName=cluster, associationId=a["associationId"])["association"]
    assert now["roleArn"] == ROLE_ARN_2


def test_duplicate_service_account_is_resource_in_use(eks, podid, cluster):
    a = podid.create_association(cluster, "default", "dup")
    with pytest.raises(eks.exceptions.ResourceInUseException) as ei:
        eks.create_pod_identity_association(
            clusterName=cluster, namespace="default", serviceAccount="dup", roleArn=ROLE_ARN_2
        )
    assert_client_error(ei, 409, "ResourceInUseException")
    assert a["associationId"] in ei.value.response["Error"]["Message"]
    listed = eks.list_pod_identity_associations(clusterName=cluster, serviceAccount="dup")["associations"]
    assert [s["associationId"] for s in listed] == [a["associationId"]]


# --------------------------------------------------------------------------
# pagination


@pytest.fixture(scope="module")
def big_cluster(podid, eks):
    """A cluster with 250 associations over 3 namespaces."""
    name = podid.new_cluster()

    def make(i):
        return eks.create_pod_identity_association(
            clusterName=name, namespace=f"ns-{i % 3}", serviceAccount=f"sa-{i:03d}", roleArn=ROLE_ARN
        )["association"]["associationId"]

    with ThreadPoolExecutor(max_workers=16) as pool:
        ids = list(pool.map(make, range(250)))
    assert len(set(ids)) == 250
    return name, set(ids)


def walk(eks, page_size, **filters):
    pages = list(
        eks.get_paginator("list_pod_identity_associations").paginate(
            PaginationConfig={"PageSize": page_size}, **filters
        )
    )
    return [len(p["associations"]) for p in pages], [s["associationId"] for p in pages for s in p["associations"]]


@pytest.mark.parametrize("page_size", [100, 7])
def test_paginator_walks_everything_once_in_a_stable_order(eks, big_cluster, page_size):
    name, ids = big_cluster
    sizes, walked = walk(eks, page_size, clusterName=name)
    full, rest = divmod(250, page_size)
    assert sizes == [page_size] * full + ([rest] if rest else [])
    assert len(walked) == len(set(walked)) == 250
    assert set(walked) == ids
    _, again = walk(eks, page_size, clusterName=name)
    assert again == walked
    _, other_size = walk(eks, 100 if page_size != 100 else 7, clusterName=name)
    assert other_size == walked


def test_paginator_with_a_filter(eks, big_cluster):
    name, _ = big_cluster
    sizes, walked = walk(eks, 10, clusterName=name, namespace="ns-1")
    assert len(walked) == len(set(walked)) == 83  # i % 3 == 1 for i < 250
    assert sizes == [10] * 8 + [3]
    listed = {s["namespace"] for p in eks.get_paginator("list_pod_identity_associations").paginate(
        clusterName=name, namespace="ns-1", PaginationConfig={"PageSize": 50}) for s in p["associations"]}
    assert listed == {"ns-1"}


def test_last_page_has_no_next_token(eks, big_cluster):
    name, _ = big_cluster
    page = eks.list_pod_identity_associations(clusterName=name, maxResults=100, namespace="ns-0")
    assert len(page["associations"]) == 84 and "nextToken" not in page
    first = eks.list_pod_identity_associations(clusterName=name, maxResults=84, namespace="ns-0")
    assert len(first["associations"]) == 84
    assert "nextToken" not in first, "a full last page must not promise another page"


def test_next_token_is_bound_to_its_query(eks, podid, big_cluster):
    name, _ = big_cluster
    page = eks.list_pod_identity_associations(clusterName=name, namespace="ns-0", maxResults=5)
    token = page["nextToken"]
    # Works with the same query.
    more = eks.list_pod_identity_associations(clusterName=name, namespace="ns-0", maxResults=5, nextToken=token)
    assert len(more["associations"]) == 5
    assert not {s["associationId"] for s in more["associations"]} & {s["associationId"] for s in page["associations"]}
    other_cluster = podid.new_cluster()
    for other in (
        dict(clusterName=name, namespace="ns-1"),
        dict(clusterName=name),
        dict(clusterName=name, namespace="ns-0", serviceAccount="sa-000"),
        dict(clusterName=other_cluster, namespace="ns-0"),
    ):
        with pytest.raises(eks.exceptions.InvalidParameterException) as ei:
            eks.list_pod_identity_associations(nextToken=token, **other)
        assert_client_error(ei, 400, "InvalidParameterException")
    for garbage in ("garbage", "djEKMQo", "!!!"):
        with pytest.raises(eks.exceptions.InvalidParameterException):
            eks.list_pod_identity_associations(clusterName=name, nextToken=garbage)


# --------------------------------------------------------------------------
# validation: every rule, and the exception class botocore maps it to


BAD_CLUSTER_NAMES = ["bad.name", "bad name", "-leading", "_leading", "a/b", "ü", "x" * 101]


@pytest.mark.parametrize("bad", BAD_CLUSTER_NAMES, ids=lambda s: s[:12])
def test_bad_cluster_name(eks, bad):
    with pytest.raises(eks.exceptions.InvalidParameterException) as ei:
        eks.create_pod_identity_association(clusterName=bad, namespace="default", serviceAccount="sa", roleArn=ROLE_ARN)
    assert_client_error(ei, 400, "InvalidParameterException")
    with pytest.raises(eks.exceptions.InvalidParameterException):
        eks.list_pod_identity_associations(clusterName=bad)
    with pytest.raises(eks.exceptions.InvalidParameterException):
        eks.describe_pod_identity_association(clusterName=bad, associationId="a-0123456789abcdefg")


def test_cluster_name_of_100_characters_is_fine(podid, eks):
    name = "c" * 90 + unique("")[1:11]
    assert len(name) == 100
    podid.register_cluster(name)
    a = podid.create_association(name)
    assert a["clusterName"] == name


@pytest.mark.parametrize(
    "namespace",
    ["Default", "my_ns", "a" * 64, "-ns", "ns-", "a.b", ""],
    ids=["uppercase", "underscore", "too-long", "leading-dash", "trailing-dash", "dot", "empty"],
)
def test_bad_namespace(eks, cluster, namespace):
    with pytest.raises(eks.exceptions.InvalidParameterException) as ei:
        eks.create_pod_identity_association(clusterName=cluster, namespace=namespace, serviceAccount="sa", roleArn=ROLE_ARN)
    assert_client_error(ei, 400, "InvalidParameterException")
    if namespace:
        with pytest.raises(eks.exceptions.InvalidParameterException):
            eks.list_pod_identity_associations(clusterName=cluster, namespace=namespace)


@pytest.mark.parametrize(
    "service_account",
    ["Boto3", "my_sa", ".".join(["a" * 63] * 4), "a..b", ".a", "a/b", ""],
    ids=["uppercase", "underscore", "too-long", "empty-label", "leading-dot", "slash", "empty"],
)
def test_bad_service_account(eks, cluster, service_account):
    with pytest.raises(eks.exceptions.InvalidParameterException) as ei:
        eks.create_pod_identity_association(clusterName=cluster, namespace="default", serviceAccount=service_account, roleArn=ROLE_ARN)
    assert_client_error(ei, 400, "InvalidParameterException")
    if service_account:
        with pytest.raises(eks.exceptions.InvalidParameterException):
            eks.list_pod_identity_associations(clusterName=cluster, serviceAccount=service_account)


def test_edge_lengths_are_accepted(eks, cluster):
    a = eks.create_pod_identity_association(
        clusterName=cluster, namespace="n" * 63, serviceAccount=".".join(["s" * 63] * 3) + "." + "t" * 61,
        roleArn="arn:aws:iam::123456789012:role/path/to/" + "r" * 64,
        tags={"k" * 128: "v" * 256, **{f"t{i}": "" for i in range(49)}},
    )["association"]
    assert len(a["serviceAccount"]) == 253 and len(a["tags"]) == 50


BAD_ROLE_ARNS = [
    "not-an-arn",
    "arn:aws:iam::123:role/x",
    "arn:aws:iam::123456789012:user/x",
    "arn:aws:iam:us-east-1:123456789012:role/x",
    "arn:aws:s3:::bucket",
    "arn:aws:iam::123456789012:role/",
    "arn:aws:iam::123456789012:role/bad name",
    "arn:aws:iam::123456789012:role/" + "x" * 65,
]


@pytest.mark.parametrize("bad", BAD_ROLE_ARNS, ids=range(len(BAD_ROLE_ARNS)))
def test_bad_role_arn(eks, podid, cluster, bad):
    with pytest.raises(eks.exceptions.InvalidParameterException) as ei:
        eks.create_pod_identity_association(clusterName=cluster, namespace="default", serviceAccount="sa", roleArn=bad)
    assert_client_error(ei, 400, "InvalidParameterException")
    with pytest.raises(eks.exceptions.InvalidParameterException):
        eks.create_pod_identity_association(clusterName=cluster, namespace="default", serviceAccount="sa",
                                            roleArn=ROLE_ARN, targetRoleArn=bad)
    a = podid.create_association(cluster)
    with pytest.raises(eks.exceptions.InvalidParameterException):
        eks.update_pod_identity_association(clusterName=cluster, associationId=a["associationId"], roleArn=bad)
    with pytest.raises(eks.exceptions.InvalidParameterException):
        eks.update_pod_identity_association(clusterName=cluster, associationId=a["associationId"], targetRoleArn=bad)
    assert eks.list_pod_identity_associations(clusterName=cluster, serviceAccount="sa")["associations"] == []


BAD_TAGS = {
    "51-tags": {f"k{i}": "v" for i in range(51)},
    "key-129": {"k" * 129: "v"},
    "value-257": {"k": "v" * 257},
    "aws-prefix": {"aws:team": "ml"},
    "AWS-prefix": {"AWS:team": "ml"},
}


@pytest.mark.parametrize("name", list(BAD_TAGS))
def test_bad_tags_on_create_and_tag_resource(eks, podid, cluster, name):
    tags = BAD_TAGS[name]
    # botocore sends these (it checks only minimum lengths), so the server judges.
    with pytest.raises(eks.exceptions.InvalidParameterException) as ei:
        eks.create_pod_identity_association(clusterName=cluster, namespace="default", serviceAccount="tagged", roleArn=ROLE_ARN, tags=tags)
    assert_client_error(ei, 400, "InvalidParameterException")
    a = podid.create_association(cluster, tags={"keep": "me"})
    with pytest.raises(eks.exceptions.InvalidParameterException) as ei:
        eks.tag_resource(resourceArn=a["associationArn"], tags=tags)
    assert_client_error(ei, 400, "InvalidParameterException")
    assert eks.list_tags_for_resource(resourceArn=a["associationArn"])["tags"] == {"keep": "me"}


def test_client_side_checked_tag_rules_are_checked_by_the_server_too(podid, cluster):
    """botocore refuses an empty key, an empty tag map and empty tagKeys: send raw."""
    body = {"namespace": "default", "serviceAccount": "raw", "roleArn": ROLE_ARN, "tags": {"": "v"}}
    assert_aws_error(podid.request("POST", assoc_path(cluster), json_body=body), 400, "InvalidParameterException")
    a = podid.create_association(cluster)
    arn_path = tags_path(a["associationArn"])
    assert_aws_error(podid.request("POST", arn_path, json_body={"tags": {"": "v"}}), 400, "InvalidParameterException")
    assert_aws_error(podid.request("POST", arn_path, json_body={"tags": {}}), 400, "InvalidParameterException")
    assert_aws_error(podid.request("POST", arn_path, json_body={}), 400, "InvalidParameterException")
    assert_aws_error(podid.request("DELETE", arn_path), 400, "InvalidParameterException")
    assert_aws_error(podid.request("DELETE", arn_path, query=[("tagKeys", "")]), 400, "InvalidParameterException")
    assert_aws_error(podid.request("DELETE", arn_path, query=[("tagKeys", "k" * 129)]), 400, "InvalidParameterException")
    many = [("tagKeys", f"k{i}") for i in range(51)]
    assert_aws_error(podid.request("DELETE", arn_path, query=many), 400, "InvalidParameterException")


def test_missing_required_fields_raw(podid, cluster):
    full = {"namespace": "default", "serviceAccount": "req", "roleArn": ROLE_ARN}
    for field in full:
        body = {k: v for k, v in full.items() if k != field}
        resp = podid.request("POST", assoc_path(cluster), json_body=body)
        err = assert_aws_error(resp, 400, "InvalidParameterException")
        assert field in err["message"]


@pytest.mark.parametrize(
    "policy,disable",
    [
        pytest.param("not json", True, id="not-json"),
        pytest.param("[1, 2]", True, id="not-an-object"),
        pytest.param(json.dumps({"Version": "2012-10-17", "Statement": [], "pad": "x" * 2048}), True, id="too-long"),
        pytest.param(POLICY, None, id="session-tags-not-disabled"),
        pytest.param(POLICY, False, id="session-tags-explicitly-on"),
    ],
)
def test_bad_policy(eks, cluster, policy, disable):
    kw = {} if disable is None else {"disableSessionTags": disable}
    with pytest.raises(eks.exceptions.InvalidParameterException) as ei:
        eks.create_pod_identity_association(clusterName=cluster, namespace="default", serviceAccount="pol",
                                            roleArn=ROLE_ARN, policy=policy, **kw)
    assert_client_error(ei, 400, "InvalidParameterException")


def test_policy_of_2048_characters_is_accepted(eks, cluster):
    base = json.dumps({"Version": "2012-10-17", "Statement": [], "pad": ""})
    policy = json.dumps({"Version": "2012-10-17", "Statement": [], "pad": "x" * (2048 - len(base))})
    assert len(policy) == 2048
    a = eks.create_pod_identity_association(clusterName=cluster, namespace="default", serviceAccount="pol2048",
                                            roleArn=ROLE_ARN, policy=policy, disableSessionTags=True)["association"]
    assert a["policy"] == policy


def test_update_must_change_something(eks, podid, cluster):
    a = podid.create_association(cluster)
    with pytest.raises(eks.exceptions.InvalidParameterException) as ei:
        eks.update_pod_identity_association(clusterName=cluster, associationId=a["associationId"])
    assert_client_error(ei, 400, "InvalidParameterException")
    # A policy alone is none of roleArn / targetRoleArn / disableSessionTags.
    with pytest.raises(eks.exceptions.InvalidParameterException):
        eks.update_pod_identity_association(clusterName=cluster, associationId=a["associationId"], policy=POLICY)
    # A policy while session tags stay enabled.
    with pytest.raises(eks.exceptions.InvalidParameterException):
        eks.update_pod_identity_association(clusterName=cluster, associationId=a["associationId"],
                                            roleArn=ROLE_ARN_2, policy=POLICY)
    after = eks.describe_pod_identity_association(clusterName=cluster, associationId=a["associationId"])["association"]
    assert after == a


@pytest.mark.parametrize("token", ["t" * 65, "has space", "tab\there"], ids=["too-long", "space", "tab"])
def test_bad_client_request_token(eks, podid, cluster, token):
    with pytest.raises(eks.exceptions.InvalidParameterException):
        eks.create_pod_identity_association(clusterName=cluster, namespace="default", serviceAccount="tok",
                                            roleArn=ROLE_ARN, clientRequestToken=token)
    a = podid.create_association(cluster)
    with pytest.raises(eks.exceptions.InvalidParameterException):
        eks.update_pod_identity_association(clusterName=cluster, associationId=a["associationId"],
                                            roleArn=ROLE_ARN_2, clientRequestToken=token)


def test_max_results_range(eks, podid, cluster):
    podid.create_association(cluster)
    for n in (1, 100):
        assert len(eks.list_pod_identity_associations(clusterName=cluster, maxResults=n)["associations"]) == 1
    # botocore refuses 0 client-side; the server must refuse it too.
    with pytest.raises(botocore.exceptions.ParamValidationError):
        eks.list_pod_identity_associations(clusterName=cluster, maxResults=0)
    for bad in ("0", "101", "-1", "abc", "1.5", ""):
        resp = podid.request("GET", assoc_path(cluster), query=[("maxResults", bad)])
        assert_aws_error(resp, 400, "InvalidParameterException")
    with pytest.raises(eks.exceptions.InvalidParameterException) as ei:
        eks.list_pod_identity_associations(clusterName=cluster, maxResults=101)
    assert_client_error(ei, 400, "InvalidParameterException")


def test_unknown_and_malformed_association_ids(eks, cluster):
    unknown = "a-zzzzzzzzzzzzzzzzz"
    for call in (
        lambda i: eks.describe_pod_identity_association(clusterName=cluster, associationId=i),
        lambda i: eks.update_pod_identity_association(clusterName=cluster, associationId=i, roleArn=ROLE_ARN_2),
        lambda i: eks.delete_pod_identity_association(clusterName=cluster, associationId=i),
    ):
        with pytest.raises(eks.exceptions.ResourceNotFoundException) as ei:
            call(unknown)
        assert_client_error(ei, 404, "ResourceNotFoundException")
        for malformed in ("a-123", "A-0123456789ABCDEFG", "b-0123456789abcdefg", "a-0123456789abcdefgh", "a-0123456789abcdef_"):
            with pytest.raises(eks.exceptions.InvalidParameterException) as ei:
                call(malformed)
            assert_client_error(ei, 400, "InvalidParameterException")


def test_unregistered_cluster_is_resource_not_found(eks):
    ghost = unique("ghost")
    with pytest.raises(eks.exceptions.ResourceNotFoundException) as ei:
        eks.create_pod_identity_association(clusterName=ghost, namespace="default", serviceAccount="sa", roleArn=ROLE_ARN)
    assert_client_error(ei, 404, "ResourceNotFoundException")
    with pytest.raises(eks.exceptions.ResourceNotFoundException):
        eks.list_pod_identity_associations(clusterName=ghost)
    with pytest.raises(eks.exceptions.ResourceNotFoundException):
        eks.describe_pod_identity_association(clusterName=ghost, associationId="a-0123456789abcdefg")


def test_association_of_another_cluster_is_not_found(eks, podid, cluster):
    a = podid.create_association(cluster)
    other = podid.new_cluster()
    with pytest.raises(eks.exceptions.ResourceNotFoundException):
        eks.describe_pod_identity_association(clusterName=other, associationId=a["associationId"])
    with pytest.raises(eks.exceptions.ResourceNotFoundException):
        eks.delete_pod_identity_association(clusterName=other, associationId=a["associationId"])
    assert eks.describe_pod_identity_association(clusterName=cluster, associationId=a["associationId"])["association"] == a


# --------------------------------------------------------------------------
# non-ASCII tags (AWS tag keys and values are Unicode; limits count characters)


def test_unicode_tags_round_trip(eks, cluster):
    """Tag keys whose 4th byte falls inside a multi-byte character (any
    Japanese key does) must be judged like any other key, not crash the
    server; lengths are counted in characters."""
    tags = {"チーム": "機械学習", "abcé": "v", "é" * 128: "€" * 256}
    try:
        a = eks.create_pod_identity_association(
            clusterName=cluster, namespace="default", serviceAccount="unicode", roleArn=ROLE_ARN, tags=tags
        )["association"]
        assert a["tags"] == tags
        eks.tag_resource(resourceArn=a["associationArn"], tags={"環境": "本番"})
        eks.untag_resource(resourceArn=a["associationArn"], tagKeys=["チーム"])
    except botocore.exceptions.ConnectionClosedError as e:
        pytest.fail(f"the server dropped the connection instead of answering: {e}")
    expected = {k: v for k, v in tags.items() if k != "チーム"} | {"環境": "本番"}
    assert eks.list_tags_for_resource(resourceArn=a["associationArn"])["tags"] == expected
    with pytest.raises(eks.exceptions.InvalidParameterException):
        eks.tag_resource(resourceArn=a["associationArn"], tags={"é" * 129: "v"})
    with pytest.raises(eks.exceptions.InvalidParameterException):
        eks.tag_resource(resourceArn=a["associationArn"], tags={"k": "€" * 257})


# --------------------------------------------------------------------------
# concurrency


def test_concurrent_creates_of_one_service_account(eks, cluster):
    def create(_):
        try:
            return eks.create_pod_identity_association(
                clusterName=cluster, namespace="default", serviceAccount="race", roleArn=ROLE_ARN
            )["association"]["associationId"]
        except eks.exceptions.ResourceInUseException:
            return "in-use"

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(create, range(32)))
    winners = [r for r in results if r != "in-use"]
    assert len(winners) == 1, results
    assert results.count("in-use") == 31


def test_concurrent_retries_with_one_token_create_once(eks, cluster):
    def create(_):
        return eks.create_pod_identity_association(
            clusterName=cluster, namespace="default", serviceAccount="retry", roleArn=ROLE_ARN,
            clientRequestToken="one-token-many-retries",
        )["association"]["associationId"]

    with ThreadPoolExecutor(max_workers=16) as pool:
        ids = set(pool.map(create, range(32)))
    assert len(ids) == 1
    assert len(eks.list_pod_identity_associations(clusterName=cluster, serviceAccount="retry")["associations"]) == 1


def test_concurrent_partial_updates_are_not_lost(eks, podid, cluster):
    """Two updates of different fields sent at the same moment must both take
    effect: one sets roleArn, the other disableSessionTags, so either serial
    order ends with both applied. (A read-modify-write outside the store's
    transaction lets the later write put back the field the other changed.)"""
    lost = []
    with ThreadPoolExecutor(max_workers=2) as pool:
        for round_ in range(30):
            aid = podid.create_association(cluster, "default", f"lu-{round_}")["associationId"]
            start = threading.Barrier(2)

            def update(i, aid=aid, start=start):
                start.wait(timeout=10)
                if i:
                    eks.update_pod_identity_association(clusterName=cluster, associationId=aid, roleArn=ROLE_ARN_2)
                else:
                    eks.update_pod_identity_association(clusterName=cluster, associationId=aid, disableSessionTags=True)

            list(pool.map(update, range(2)))
            final = eks.describe_pod_identity_association(clusterName=cluster, associationId=aid)["association"]
            if final["roleArn"] != ROLE_ARN_2 or final["disableSessionTags"] is not True:
                lost.append((round_, final["roleArn"], final["disableSessionTags"]))
    assert lost == [], f"{len(lost)} of 30 rounds lost an update, e.g. {lost[:2]}"


# --------------------------------------------------------------------------
# the JSON on the wire (botocore drops members it does not model, so check raw)


def test_wire_shapes_raw(podid, cluster):
    created = podid.request("POST", assoc_path(cluster), json_body={
        "namespace": "default", "serviceAccount": "wire", "roleArn": ROLE_ARN, "tags": {"a": "b"},
        "targetRoleArn": TARGET_ROLE_ARN,
    })
    assert created.status_code == 200, created.text
    assert created.headers["content-type"].startswith("application/json")
    body = created.json()
    assert set(body) == {"association"}
    a = body["association"]
    assert set(a) == FULL_FIELDS - {"policy"}, set(a)
    for field in ("createdAt", "modifiedAt"):
        assert isinstance(a[field], (int, float)) and not isinstance(a[field], bool), a[field]
    assert isinstance(a["disableSessionTags"], bool) and a["tags"] == {"a": "b"}

    listed = podid.request("GET", assoc_path(cluster)).json()
    assert set(listed) == {"associations"}  # no nextToken on the only page
    for s in listed["associations"]:
        assert set(s) <= SUMMARY_FIELDS | {"ownerArn"} and SUMMARY_FIELDS <= set(s), s

    arn_path = tags_path(a["associationArn"])
    tagged = podid.request("POST", arn_path, json_body={"tags": {"c": "d"}})
    assert tagged.status_code == 200 and tagged.json() == {}
    assert podid.request("GET", arn_path).json() == {"tags": {"a": "b", "c": "d"}}
    untagged = podid.request("DELETE", arn_path, query=[("tagKeys", "a"), ("tagKeys", "c")])
    assert untagged.status_code == 200 and untagged.json() == {}
    assert podid.request("GET", arn_path).json() == {"tags": {}}

    deleted = podid.request("DELETE", assoc_path(cluster, a["associationId"]))
    assert deleted.status_code == 200 and deleted.json()["association"]["associationId"] == a["associationId"]
