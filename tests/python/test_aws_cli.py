"""The real aws CLI v1 against podid (`--endpoint-url`), as the article's
readers would use it."""

from __future__ import annotations

import datetime as dt

from podid_helpers import ASSOCIATION_ID_RE, ROLE_ARN, ROLE_ARN_2, association_arn


def parse_time(value) -> dt.datetime:
    """The CLI prints timestamps as ISO 8601 strings or epoch numbers,
    depending on its cli_timestamp_format."""
    if isinstance(value, (int, float)):
        return dt.datetime.fromtimestamp(value, dt.timezone.utc)
    return dt.datetime.fromisoformat(value)


def test_aws_cli_round_trip(aws_cli, podid, cluster):
    rc, out, err = aws_cli(
        "eks", "create-pod-identity-association",
        "--cluster-name", cluster,
        "--namespace", "default",
        "--service-account", "boto3",
        "--role-arn", ROLE_ARN,
        "--tags", "team=ml,env=dev",
    )
    assert rc == 0, err
    a = out["association"]
    aid = a["associationId"]
    assert ASSOCIATION_ID_RE.match(aid)
    assert a["associationArn"] == association_arn(cluster, aid)
    assert (a["clusterName"], a["namespace"], a["serviceAccount"], a["roleArn"]) == (cluster, "default", "boto3", ROLE_ARN)
    assert a["tags"] == {"team": "ml", "env": "dev"}
    assert a["disableSessionTags"] is False
    created = parse_time(a["createdAt"])
    assert abs((dt.datetime.now(dt.timezone.utc) - created).total_seconds()) < 60

    rc, out, err = aws_cli("eks", "describe-pod-identity-association", "--cluster-name", cluster, "--association-id", aid)
    assert rc == 0, err
    assert out["association"] == a

    rc, out, err = aws_cli("eks", "list-pod-identity-associations", "--cluster-name", cluster)
    assert rc == 0, err
    assert out["associations"] == [{
        "clusterName": cluster, "namespace": "default", "serviceAccount": "boto3",
        "associationArn": a["associationArn"], "associationId": aid,
    }]
    rc, out, err = aws_cli("eks", "list-pod-identity-associations", "--cluster-name", cluster, "--namespace", "other")
    assert rc == 0, err
    assert out["associations"] == []

    rc, out, err = aws_cli(
        "eks", "update-pod-identity-association", "--cluster-name", cluster, "--association-id", aid,
        "--role-arn", ROLE_ARN_2, "--disable-session-tags",
    )
    assert rc == 0, err
    u = out["association"]
    assert u["roleArn"] == ROLE_ARN_2 and u["disableSessionTags"] is True
    assert u["createdAt"] == a["createdAt"] and u["externalId"] == a["externalId"]

    arn = a["associationArn"]
    rc, out, err = aws_cli("eks", "tag-resource", "--resource-arn", arn, "--tags", "owner=alice", expect_json=False)
    assert rc == 0, err
    rc, out, err = aws_cli("eks", "list-tags-for-resource", "--resource-arn", arn)
    assert rc == 0, err
    assert out["tags"] == {"team": "ml", "env": "dev", "owner": "alice"}

    rc, out, err = aws_cli("eks", "untag-resource", "--resource-arn", arn, "--tag-keys", "team", "env", expect_json=False)
    assert rc == 0, err
    rc, out, err = aws_cli("eks", "list-tags-for-resource", "--resource-arn", arn)
    assert rc == 0, err
    assert out["tags"] == {"owner": "alice"}

    rc, out, err = aws_cli("eks", "delete-pod-identity-association", "--cluster-name", cluster, "--association-id", aid)
    assert rc == 0, err
    assert out["association"]["associationId"] == aid
    assert out["association"]["roleArn"] == ROLE_ARN_2
    assert out["association"]["tags"] == {"owner": "alice"}

    rc, out, err = aws_cli("eks", "describe-pod-identity-association", "--cluster-name", cluster, "--association-id", aid)
    assert rc in (254, 255), (rc, err)
    assert "ResourceNotFoundException" in err


def test_aws_cli_duplicate_is_resource_in_use(aws_cli, podid, cluster):
    first = podid.create_association(cluster, "default", "dup")
    rc, out, err = aws_cli(
        "eks", "create-pod-identity-association", "--cluster-name", cluster,
        "--namespace", "default", "--service-account", "dup", "--role-arn", ROLE_ARN,
    )
    assert rc in (254, 255), (rc, err)
    assert "ResourceInUseException" in err
    assert first["associationId"] in err
    listed = podid.client().list_pod_identity_associations(clusterName=cluster)["associations"]
    assert [s["associationId"] for s in listed] == [first["associationId"]]


def test_aws_cli_paginates_through_the_server(aws_cli, podid, cluster):
    for i in range(5):
        podid.create_association(cluster, "default", f"page-{i}")
    # --page-size makes the CLI walk five pages of one via nextToken.
    rc, out, err = aws_cli("eks", "list-pod-identity-associations", "--cluster-name", cluster, "--page-size", "1")
    assert rc == 0, err
    assert sorted(s["serviceAccount"] for s in out["associations"]) == [f"page-{i}" for i in range(5)]
    assert "nextToken" not in out


def test_aws_cli_with_a_reader_key_is_denied_writes(aws_cli, cluster):
    rc, out, err = aws_cli(
        "eks", "create-pod-identity-association", "--cluster-name", cluster,
        "--namespace", "default", "--service-account", "r", "--role-arn", ROLE_ARN, role="reader",
    )
    assert rc in (254, 255), (rc, err)
    assert "AccessDeniedException" in err
    rc, out, err = aws_cli("eks", "list-pod-identity-associations", "--cluster-name", cluster, role="reader")
    assert rc == 0, err
    assert out["associations"] == []
