"""The `podid` command-line verbs against a running server."""

from __future__ import annotations

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor

from podid_helpers import (
    ASSOCIATION_ID_RE,
    POLICY,
    ROLE_ARN,
    ROLE_ARN_2,
    TARGET_ROLE_ARN,
    association_arn,
    podid_bin,
    sample_jwks,
    unique,
)


def ok_json(proc):
    assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr)
    return json.loads(proc.stdout)


def failed(proc, error_name: str):
    assert proc.returncode != 0, (proc.stdout, proc.stderr)
    assert error_name in proc.stderr, proc.stderr
    assert proc.stdout.strip() == "", proc.stdout


def test_cluster_register_describe_list(podid_cli, podid, tmp_path):
    jwks = sample_jwks()
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps(jwks))
    name = unique("cli")
    c = ok_json(podid_cli("cluster", "register", "--name", name, "--issuer", "https://issuer.example",
                          "--jwks-file", str(jwks_file), "-o", "json"))["cluster"]
    assert c["name"] == name and c["jwks"] == jwks and c["keySource"] == "inline"
    assert c["issuer"] == "https://issuer.example"

    assert ok_json(podid_cli("cluster", "describe", "--name", name, "-o", "json"))["cluster"] == c
    listed = ok_json(podid_cli("cluster", "list", "-o", "json"))["clusters"]
    assert c in listed

    table = podid_cli("cluster", "list")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["NAME", "ISSUER", "AUDIENCE", "KEYS", "AGENTS", "NODE", "BINDING",
                                "CLUSTER", "ARN"]
    rows = [l for l in lines[1:] if l.split()[0] == name]
    assert len(rows) == 1
    assert "https://issuer.example" in rows[0] and "inline (1 keys)" in rows[0] and c["clusterArn"] in rows[0]
    assert rows[0].split()[6:8] == ["key", "off"], rows[0]
    assert len(lines) == 1 + len(listed)

    failed(podid_cli("cluster", "register", "--name", name, "--issuer", "https://issuer.example",
                     "--jwks-file", str(jwks_file)), "ResourceInUseException")


def test_association_create_list_describe_update_delete(podid_cli, podid, tmp_path):
    cluster = podid.new_cluster()
    policy_file = tmp_path / "policy.json"
    policy_file.write_text(POLICY)
    created = ok_json(podid_cli(
        "association", "create", "--cluster-name", cluster, "--namespace", "default",
        "--service-account", "boto3", "--role-arn", ROLE_ARN, "--target-role-arn", TARGET_ROLE_ARN,
        "--disable-session-tags", "--policy", f"@{policy_file}", "--tag", "team=ml", "--tag", "k=a=b",
        "-o", "json",
    ))["association"]
    aid = created["associationId"]
    assert ASSOCIATION_ID_RE.match(aid)
    assert created["associationArn"] == association_arn(cluster, aid)
    assert created["roleArn"] == ROLE_ARN and created["targetRoleArn"] == TARGET_ROLE_ARN
    assert created["disableSessionTags"] is True and created["policy"] == POLICY
    assert created["tags"] == {"team": "ml", "k": "a=b"}
    assert created["externalId"]

    # What the CLI created is what the EKS API describes.
    via_boto = podid.client().describe_pod_identity_association(clusterName=cluster, associationId=aid)["association"]
    assert via_boto["roleArn"] == ROLE_ARN and via_boto["tags"] == created["tags"]

    described = ok_json(podid_cli("association", "describe", "--cluster-name", cluster, "--association-id", aid, "-o", "json"))
    assert described == {"association": created}

    others = [
        ok_json(podid_cli("association", "create", "--cluster-name", cluster, "--namespace", ns,
                          "--service-account", sa, "--role-arn", ROLE_ARN, "-o", "json"))["association"]
        for ns, sa in [("default", "web"), ("batch", "worker")]
    ]
    listed = ok_json(podid_cli("association", "list", "--cluster-name", cluster, "-o", "json"))
    assert sorted(s["associationId"] for s in listed["associations"]) == sorted([aid] + [o["associationId"] for o in others])
    assert "nextToken" not in listed
    only = ok_json(podid_cli("association", "list", "--cluster-name", cluster, "--namespace", "batch", "-o", "json"))
    assert [s["serviceAccount"] for s in only["associations"]] == ["worker"]
    only = ok_json(podid_cli("association", "list", "--cluster-name", cluster, "--namespace", "default",
                             "--service-account", "web", "-o", "json"))
    assert [s["associationId"] for s in only["associations"]] == [others[0]["associationId"]]

    table = podid_cli("association", "list", "--cluster-name", cluster)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["ASSOCIATION", "ID", "CLUSTER", "NAMESPACE", "SERVICE", "ACCOUNT"]
    assert len(lines) == 4, table.stdout
    rows = {tuple(l.split()) for l in lines[1:]}
    assert rows == {
        (aid, cluster, "default", "boto3"),
        (others[0]["associationId"], cluster, "default", "web"),
        (others[1]["associationId"], cluster, "batch", "worker"),
    }

    updated = ok_json(podid_cli("association", "update", "--cluster-name", cluster, "--association-id", aid,
                                "--role-arn", ROLE_ARN_2, "--target-role-arn", "", "-o", "json"))["association"]
    assert updated["roleArn"] == ROLE_ARN_2 and "targetRoleArn" not in updated
    assert updated["policy"] == POLICY and updated["createdAt"] == created["createdAt"]
    updated = ok_json(podid_cli("association", "update", "--cluster-name", cluster, "--association-id", aid,
                                "--disable-session-tags", "true", "--policy", "", "-o", "json"))["association"]
    assert "policy" not in updated
    updated = ok_json(podid_cli("association", "update", "--cluster-name", cluster, "--association-id", aid,
                                "--disable-session-tags", "false", "-o", "json"))["association"]
    assert updated["disableSessionTags"] is False

    human = podid_cli("association", "describe", "--cluster-name", cluster, "--association-id", aid)
    assert human.returncode == 0, human.stderr
    fields = {l[:16].strip(): l[17:] for l in human.stdout.splitlines()}
    assert fields["ASSOCIATION ID"] == aid and fields["ROLE ARN"] == ROLE_ARN_2
    assert fields["SESSION TAGS"] == "enabled" and fields["TARGET ROLE ARN"] == "-"

    deleted = ok_json(podid_cli("association", "delete", "--cluster-name", cluster, "--association-id", aid, "-o", "json"))
    assert deleted["association"]["associationId"] == aid and deleted["association"]["roleArn"] == ROLE_ARN_2
    failed(podid_cli("association", "describe", "--cluster-name", cluster, "--association-id", aid),
           "ResourceNotFoundException")
    plain = podid_cli("association", "delete", "--cluster-name", cluster, "--association-id", others[0]["associationId"])
    assert plain.returncode == 0 and others[0]["associationId"] in plain.stdout
    remaining = ok_json(podid_cli("association", "list", "--cluster-name", cluster, "-o", "json"))["associations"]
    assert [s["associationId"] for s in remaining] == [others[1]["associationId"]]


def test_association_list_walks_every_page(podid_cli, podid):
    """More than one page of 100: the CLI follows nextToken."""
    cluster = podid.new_cluster()
    eks = podid.client()
    with ThreadPoolExecutor(max_workers=16) as pool:
        ids = set(pool.map(
            lambda i: eks.create_pod_identity_association(
                clusterName=cluster, namespace="default", serviceAccount=f"sa-{i}", roleArn=ROLE_ARN
            )["association"]["associationId"],
            range(205),
        ))
    listed = ok_json(podid_cli("association", "list", "--cluster-name", cluster, "-o", "json"))["associations"]
    assert len(listed) == 205 and {s["associationId"] for s in listed} == ids
    table = podid_cli("association", "list", "--cluster-name", cluster)
    assert table.returncode == 0 and len(table.stdout.splitlines()) == 206


def test_trust_policy():
    proc = subprocess.run(
        [str(podid_bin()), "trust-policy", "--broker-principal", "arn:aws:iam::123456789012:role/podid-broker"],
        capture_output=True, text=True, timeout=30,
    )
    doc = ok_json(proc)
    assert doc["Version"] == "2012-10-17"
    assert len(doc["Statement"]) == 1
    st = doc["Statement"][0]
    assert st["Effect"] == "Allow"
    assert st["Principal"] == {"AWS": "arn:aws:iam::123456789012:role/podid-broker"}
    assert sorted(st["Action"]) == ["sts:AssumeRole", "sts:TagSession"]

    bad = subprocess.run([str(podid_bin()), "trust-policy", "--broker-principal", "podid-broker"],
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode != 0 and "broker-principal" in bad.stderr and bad.stdout == ""


def test_cli_errors_exit_non_zero_and_name_the_error(podid_cli, podid):
    cluster = podid.new_cluster()
    args = ["association", "create", "--cluster-name", cluster, "--namespace", "default",
            "--service-account", "dup", "--role-arn", ROLE_ARN]
    ok_json(podid_cli(*args, "-o", "json"))
    failed(podid_cli(*args), "ResourceInUseException")
    failed(podid_cli("association", "create", "--cluster-name", cluster, "--namespace", "Bad_NS",
                     "--service-account", "x", "--role-arn", ROLE_ARN), "InvalidParameterException")
    failed(podid_cli("association", "create", "--cluster-name", cluster, "--namespace", "default",
                     "--service-account", "x", "--role-arn", "not-an-arn"), "InvalidParameterException")
    failed(podid_cli("association", "list", "--cluster-name", unique("ghost")), "ResourceNotFoundException")
    failed(podid_cli("association", "describe", "--cluster-name", cluster, "--association-id", "a-bad"),
           "InvalidParameterException")
    failed(podid_cli("association", "update", "--cluster-name", cluster, "--association-id", "a-0123456789abcdefg",
                     "--role-arn", ROLE_ARN_2), "ResourceNotFoundException")
    # Keys and roles.
    failed(podid_cli("association", "list", "--cluster-name", cluster, role=None), "MissingAuthenticationTokenException")
    failed(podid_cli(*args[:-2], "--role-arn", ROLE_ARN_2, role="reader"), "AccessDeniedException")
    failed(podid_cli("cluster", "list", role="node"), "AccessDeniedException")
    # No endpoint at all.
    proc = podid_cli("association", "list", "--cluster-name", cluster, endpoint=False)
    assert proc.returncode != 0 and "--endpoint" in proc.stderr
    # Reader reads fine.
    listed = ok_json(podid_cli("association", "list", "--cluster-name", cluster, "-o", "json", role="reader"))
    assert [s["serviceAccount"] for s in listed["associations"]] == ["dup"]


def test_cluster_update_and_deregister(podid_cli, podid, tmp_path):
    name = podid.new_cluster()
    u = ok_json(podid_cli("cluster", "update", "--name", name, "--audience", "my-aud", "-o", "json"))["cluster"]
    assert u["audience"] == "my-aud"
    empty = podid_cli("association", "list", "--cluster-name", name)
    assert empty.returncode == 0 and empty.stdout.splitlines() == [
        "ASSOCIATION ID  CLUSTER  NAMESPACE  SERVICE ACCOUNT"
    ], empty.stdout
    podid.create_association(name)
    failed(podid_cli("cluster", "deregister", "--name", name), "ResourceInUseException")
    out = ok_json(podid_cli("cluster", "deregister", "--name", name, "--force", "-o", "json"))
    assert out["cluster"]["name"] == name and out["cluster"]["audience"] == "my-aud"
    failed(podid_cli("cluster", "describe", "--name", name), "ResourceNotFoundException")
    # A registration without keys is refused before anything is sent.
    proc = podid_cli("cluster", "register", "--name", unique("nokeys"), "--issuer", "https://i.example")
    assert proc.returncode != 0 and "--jwks-file" in proc.stderr
