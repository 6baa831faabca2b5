"""boto3, the aws CLI and podid's CLI against `podid server` over HTTPS, with a
certificate made by deploy/README.md's own openssl commands ("By hand").

Each client works when it trusts the private CA (boto3 `verify=ca.crt`, the
aws CLI `--ca-bundle ca.crt`, `podid --ca-file ca.crt`) and refuses the
server, naming certificate verification, when it does not.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import boto3
import botocore.exceptions
import pytest
from botocore.config import Config

from podid_helpers import (
    REGION,
    REPO_ROOT,
    ROLE_ARN,
    ServerProcess,
    aws_cli_bin,
    cli_env,
    podid_bin,
    sample_jwks,
    unique,
)


class HttpsServerProcess(ServerProcess):
    """`podid server` with --tls-cert/--tls-key: its line names https://."""

    LISTEN_LINE = re.compile(rb"^podid server listening on (https://127\.0\.0\.1:\d+)$")


def readme_openssl_commands() -> str:
    """The openssl lines of deploy/README.md's "By hand" server certificate block."""
    readme = (REPO_ROOT / "deploy" / "README.md").read_text()
    section = readme.split("### 2. The server's certificate", 1)[1]
    block = section.split("**By hand**", 1)[1].split("```sh\n", 1)[1].split("\n```", 1)[0]
    # Joined continuation lines; kubectl needs a cluster and is not run.
    commands = block.replace("\\\n", " ").splitlines()
    openssl = [c for c in commands if c.startswith("openssl ")]
    assert len(openssl) == 3, commands
    return "set -euo pipefail\n" + "\n".join(openssl) + "\n"


@pytest.fixture(scope="module")
def tls_dir(tmp_path_factory) -> Path:
    """ca.crt, tls.crt and tls.key made by the README's commands."""
    openssl = shutil.which("openssl")
    bash = shutil.which("bash")
    if not (openssl and bash):
        pytest.skip("openssl and bash are needed to make the README's certificate")
    work = tmp_path_factory.mktemp("tls")
    proc = subprocess.run(
        [bash, "-c", readme_openssl_commands()],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    # The leaf names the in-cluster Service and the loopback the tests use.
    text = subprocess.run(
        [openssl, "x509", "-in", str(work / "tls.crt"), "-noout", "-text"],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout
    for name in ("DNS:podid-server.podid-system.svc", "DNS:localhost", "IP Address:127.0.0.1"):
        assert name in text, text
    return work


@pytest.fixture(scope="module")
def https_podid(tmp_path_factory, keys_file, tls_dir):
    server = HttpsServerProcess(
        tmp_path_factory.mktemp("https-server"),
        keys_file,
        extra_args=["--tls-cert", str(tls_dir / "tls.crt"), "--tls-key", str(tls_dir / "tls.key")],
    ).start()
    yield server
    rc = server.stop()
    assert rc == 0, f"podid server exited with {rc} on SIGTERM:\n{server.log_tail()}"


def eks_client(endpoint: str, key, verify):
    return boto3.session.Session().client(
        "eks",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=key.access_key_id,
        aws_secret_access_key=key.secret_access_key,
        verify=verify,
        config=Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=5, read_timeout=30),
    )


def podid_cli(tmp_path, key, *args, ca_file: Path | None):
    extra = ["--ca-file", str(ca_file)] if ca_file else []
    return subprocess.run(
        [str(podid_bin()), *args, *extra],
        env=cli_env(tmp_path / "podid-home", key),
        capture_output=True,
        text=True,
        timeout=60,
    )


def aws_cli(tmp_path, key, *args, ca_bundle: Path | None):
    extra = ["--ca-bundle", str(ca_bundle)] if ca_bundle else []
    return subprocess.run(
        [str(aws_cli_bin()), *args, "--output", "json", *extra],
        env=cli_env(tmp_path / "aws-home", key),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_podid_cli_trusts_the_ca_file_and_refuses_without_it(https_podid, tls_dir, api_keys, tmp_path):
    assert https_podid.endpoint.startswith("https://")
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(sample_jwks()))
    name = unique("tls")
    register = ("cluster", "register", "--name", name, "--issuer", "https://issuer.example/tls",
                "--jwks-file", str(jwks), "--endpoint", https_podid.endpoint, "-o", "json")
    refused = podid_cli(tmp_path, api_keys["admin"], *register, ca_file=None)
    assert refused.returncode != 0
    assert "certificate" in refused.stderr.lower(), refused.stderr
    ok = podid_cli(tmp_path, api_keys["admin"], *register, ca_file=tls_dir / "ca.crt")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["cluster"]["name"] == name


@pytest.mark.parametrize("bad", ["missing", "empty", "key"])
def test_podid_cli_refuses_a_ca_file_it_cannot_use(https_podid, tls_dir, api_keys, tmp_path, bad):
    path = {
        "missing": tmp_path / "nope.crt",
        "empty": tmp_path / "empty.crt",
        "key": tls_dir / "tls.key",
    }[bad]
    if bad == "empty":
        path.write_text("")
    proc = podid_cli(tmp_path, api_keys["admin"], "cluster", "list", "--endpoint",
                     https_podid.endpoint, ca_file=path)
    assert proc.returncode != 0
    expected = "cannot read the CA file" if bad == "missing" else "holds no certificate"
    assert expected in proc.stderr and str(path) in proc.stderr, proc.stderr


def register_cluster(https_podid, tls_dir, api_keys, tmp_path) -> str:
    """A new cluster, registered with podid's CLI trusting the CA; its name."""
    cluster = unique("tls")
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(sample_jwks()))
    reg = podid_cli(tmp_path, api_keys["admin"], "cluster", "register", "--name", cluster,
                    "--issuer", "https://issuer.example/tls", "--jwks-file", str(jwks),
                    "--endpoint", https_podid.endpoint, ca_file=tls_dir / "ca.crt")
    assert reg.returncode == 0, reg.stderr
    return cluster


def test_boto3_verifies_with_the_ca_and_refuses_without(https_podid, tls_dir, api_keys, tmp_path):
    cluster = register_cluster(https_podid, tls_dir, api_keys, tmp_path)

    eks = eks_client(https_podid.endpoint, api_keys["admin"], str(tls_dir / "ca.crt"))
    created = eks.create_pod_identity_association(
        clusterName=cluster, namespace="default", serviceAccount="tls-sa", roleArn=ROLE_ARN,
    )["association"]
    listed = eks.list_pod_identity_associations(clusterName=cluster)["associations"]
    assert [a["associationId"] for a in listed] == [created["associationId"]]

    # botocore's default trust (certifi) does not hold the private CA.
    untrusting = eks_client(https_podid.endpoint, api_keys["admin"], True)
    with pytest.raises(botocore.exceptions.SSLError) as err:
        untrusting.list_pod_identity_associations(clusterName=cluster)
    assert "CERTIFICATE_VERIFY_FAILED" in str(err.value), err.value


def test_aws_cli_ca_bundle_and_without(https_podid, tls_dir, api_keys, tmp_path):
    cluster = register_cluster(https_podid, tls_dir, api_keys, tmp_path)
    create = ("eks", "create-pod-identity-association", "--endpoint-url", https_podid.endpoint,
              "--cluster-name", cluster, "--namespace", "default", "--service-account", "cli-sa",
              "--role-arn", ROLE_ARN)
    ok = aws_cli(tmp_path, api_keys["admin"], *create, ca_bundle=tls_dir / "ca.crt")
    assert ok.returncode == 0, ok.stderr
    association = json.loads(ok.stdout)["association"]
    assert association["serviceAccount"] == "cli-sa"

    listing = ("eks", "list-pod-identity-associations", "--endpoint-url", https_podid.endpoint,
               "--cluster-name", cluster)
    ok = aws_cli(tmp_path, api_keys["reader"], *listing, ca_bundle=tls_dir / "ca.crt")
    assert ok.returncode == 0, ok.stderr
    assert [a["associationId"] for a in json.loads(ok.stdout)["associations"]] == [association["associationId"]]

    refused = aws_cli(tmp_path, api_keys["reader"], *listing, ca_bundle=None)
    assert refused.returncode != 0
    assert "CERTIFICATE_VERIFY_FAILED" in refused.stderr, refused.stderr
