"""The seed article's scenario on podid, end to end, with every real part
(issue 6): the acceptance test of the whole system.

The scenario lives in `article.py` (the same code `./demo.sh` plays): moto as
AWS with IAM enforced, `podid server` on embedded SQLite, a node per cluster
with `podid agent init` + `podid agent` on 169.254.170.23:80, `podid webhook`
over TLS, the real aws CLI and the article's boto3 code as the pod. It runs
once per mode — `netns` (root: network namespaces, the real link-local
address, the token at the exact injected path) and `loopback` (what the demo
does without root) — and records every step; the tests below check what it
recorded. A broken step fails every test of its mode with `step N: NAME: …`.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import article
from article import (
    EKS_CREDENTIALS_URI,
    EXPECTED_POD_OUTPUT,
    FULL_URI_ENV,
    POD_IDENTITY_LABEL,
    ROLE_ARN,
    STEPS,
    TOKEN_AUDIENCE,
    TOKEN_FILE,
    TOKEN_FILE_ENV,
    TOKEN_MOUNT_PATH,
    TOKEN_VOLUME,
    Recorder,
    Scenario,
    StepFailed,
    container_env,
    projected_token,
)
from node_helpers import netns_supported, panics
from podid_helpers import ASSOCIATION_ID_RE, REPO_ROOT

_why_not_netns = netns_supported()


def _log_tails(scenario: Scenario, n: int = 15) -> str:
    parts = []
    for name, path in scenario.logs().items():
        try:
            tail = path.read_text(errors="replace").splitlines()[-n:]
        except OSError:
            continue
        parts.append(f"--- {name} ({path})\n" + "\n".join(tail))
    return "\n".join(parts)


@pytest.fixture(scope="module", params=["netns", "loopback"])
def played(request, tmp_path_factory) -> tuple[Scenario, Recorder]:
    """The whole scenario, played once per mode; (scenario, recorder)."""
    mode = request.param
    if mode == "netns" and _why_not_netns:
        pytest.skip(f"netns mode: {_why_not_netns}")
    recorder = Recorder()
    scenario = Scenario(tmp_path_factory.mktemp(f"article-{mode}"), recorder, mode=mode)
    try:
        scenario.run()
    except StepFailed as e:
        scenario.close()
        pytest.fail(f"{e}\n\n{_log_tails(scenario)}", pytrace=False)
    finally:
        scenario.close()
    return scenario, recorder


# --------------------------------------------------------------------------
# the story, step by step


def test_every_step_ran_in_order(played):
    scenario, recorder = played
    assert recorder.steps == [(i, name) for i, (_, name) in enumerate(STEPS, 1)]
    assert scenario.completed == list(range(1, len(STEPS) + 1))


def test_the_role_and_bucket_are_the_articles_and_trust_only_the_broker(played):
    scenario, _ = played
    role = scenario.results["role_before"]
    assert role["arn"] == ROLE_ARN
    (statement,) = role["trust"]["Statement"]
    assert statement["Effect"] == "Allow"
    assert statement["Principal"] == {"AWS": f"arn:aws:iam::{article.ACCOUNT}:user/podid-broker"}
    assert sorted(statement["Action"]) == ["sts:AssumeRole", "sts:TagSession"]
    assert "Condition" not in statement
    (policy,) = role["inline"].values()
    (allow,) = policy["Statement"]
    assert (allow["Effect"], sorted(allow["Action"]), allow["Resource"]) == (
        "Allow", ["s3:GetObject", "s3:ListBucket"], "arn:aws:s3:::*")
    # `podid trust-policy` prints that very statement (plus a Sid label).
    (printed,) = scenario.results["trust_policy_printed"]["Statement"]
    assert printed.pop("Sid") == "PodidBroker"
    assert printed == {**statement, "Action": sorted(statement["Action"])}


def test_before_any_association_the_webhook_changes_nothing_and_the_pod_has_no_credentials(played):
    scenario, _ = played
    admitted = scenario.results["before_admission"]
    assert admitted.ops == []
    assert "env" not in admitted.pod["spec"]["containers"][0]
    assert "volumes" not in admitted.pod["spec"]
    proc = scenario.results["before_association"]
    assert proc.returncode == 1 and proc.stdout == ""
    # No env vars were injected and the node offers no instance metadata: the
    # SDK finds no credentials at all (the article's AccessDenied came from the
    # EKS node's instance role).
    assert proc.stderr.strip().splitlines()[-1] == "botocore.exceptions.NoCredentialsError: Unable to locate credentials"


def test_the_aws_cli_creates_the_association(played):
    scenario, recorder = played
    association = scenario.results["association"]
    assert ASSOCIATION_ID_RE.match(association["associationId"])
    assert association["associationArn"] == (f"arn:aws:eks:us-east-1:{article.ACCOUNT}:podidentityassociation/"
                                             f"blue/{association['associationId']}")
    assert (association["clusterName"], association["namespace"], association["serviceAccount"],
            association["roleArn"]) == ("blue", "default", "boto3", ROLE_ARN)
    step = next(i for i, (key, _) in enumerate(STEPS, 1) if key == "associate")
    (command,) = [v for k, v in recorder.of_step(step) if k == "command"]
    assert command[1].startswith("aws eks create-pod-identity-association --endpoint-url http://")
    assert ("--cluster-name blue --namespace default --service-account boto3 "
            f"--role-arn {ROLE_ARN}") in command[1]


def test_the_restarted_pod_gets_what_eks_injects_and_prints_the_bucket(played):
    scenario, _ = played
    admitted = scenario.results["blue_pod"]
    pod = admitted.pod
    uri = EKS_CREDENTIALS_URI if scenario.mode == "netns" else scenario.clusters["blue"].agent_uri
    assert container_env(pod) == {FULL_URI_ENV: uri, TOKEN_FILE_ENV: TOKEN_FILE}
    (volume,) = pod["spec"]["volumes"]
    assert volume["name"] == TOKEN_VOLUME
    sat = volume["projected"]["sources"][0]["serviceAccountToken"]
    assert sat["audience"] == TOKEN_AUDIENCE and sat["path"] == "eks-pod-identity-token"
    assert 79_200 <= sat["expirationSeconds"] <= 86_400
    (mount,) = pod["spec"]["containers"][0]["volumeMounts"]
    assert mount == {"name": TOKEN_VOLUME, "mountPath": TOKEN_MOUNT_PATH, "readOnly": True}
    assert pod["metadata"]["labels"] == {POD_IDENTITY_LABEL: "enabled"}
    assert projected_token(pod) == (sat, TOKEN_FILE)
    # The token the stand-in kubelet wrote carries what the volume asked for.
    claims = json.loads(_b64url(scenario.clusters["blue"].token.split(".")[1]))
    assert claims["aud"] == [TOKEN_AUDIENCE]
    assert claims["exp"] - claims["iat"] == sat["expirationSeconds"]
    assert claims["kubernetes.io"]["pod"] == {"name": "boto3", "uid": admitted.uid}
    assert claims["sub"] == "system:serviceaccount:default:boto3"
    run = scenario.results["blue_pod_run"]
    assert (run.returncode, run.stdout) == (0, EXPECTED_POD_OUTPUT + "\n"), run.stderr


def test_association_list_shows_the_association(played):
    scenario, _ = played
    lines = scenario.results["association_list"].strip().splitlines()
    assert re.split(r"\s{2,}", lines[0]) == ["ASSOCIATION ID", "CLUSTER", "NAMESPACE", "SERVICE ACCOUNT"]
    assert [line.split() for line in lines[1:]] == [
        [scenario.results["association"]["associationId"], "blue", "default", "boto3"]]


def test_a_second_cluster_uses_the_same_role_without_touching_its_trust_policy(played):
    scenario, _ = played
    blue, green = scenario.clusters["blue"], scenario.clusters["green"]
    assert green.issuer != blue.issuer and green.kid != blue.kid
    assert green.association_id and green.association_id != blue.association_id
    run = scenario.results["green_pod_run"]
    assert (run.returncode, run.stdout) == (0, EXPECTED_POD_OUTPUT + "\n"), run.stderr
    before, after = scenario.results["role_before"], scenario.results["role_after"]
    assert after["trust_raw"] == before["trust_raw"]  # byte for byte, as IAM stores it
    assert after["inline"] == before["inline"]


def test_a_blue_token_under_greens_name_is_refused(played):
    scenario, _ = played
    resp = scenario.results["cross_cluster"]
    assert resp.status_code == 400
    body = resp.json()
    assert body["code"] == "InvalidTokenException"
    assert "cluster green" in body["message"]


def test_a_deleted_association_stops_the_pods_credentials_within_2_s(played):
    scenario, _ = played
    elapsed, attempts = scenario.results["revoked_after"]
    assert scenario.revoke_deadline == 2.0  # the bound, with the agent's default settings
    assert scenario.refresh_lead is None
    assert attempts >= 1 and elapsed < 2.0
    run = scenario.results["after_delete"]
    assert run.returncode == 1 and run.stdout == ""
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("botocore.exceptions.CredentialRetrievalError"), last
    assert "404" in last and "ResourceNotFoundException" in last
    resp = scenario.results["agent_after_delete"]
    assert resp.status_code == 404 and resp.json()["code"] == "ResourceNotFoundException"


def test_every_process_stopped_cleanly_and_nothing_is_left(played):
    scenario, _ = played
    names = {c.name for c in scenario.children}
    assert names == {"moto", "podid server", "agent blue", "webhook blue", "agent green", "webhook green"}
    assert scenario.exit_codes == {name: 0 for name in names}, scenario.exit_codes
    for child in scenario.children:
        assert not panics(child.log_path), f"{child.name} panicked: {panics(child.log_path)}"
    listed = _netns_list()
    for name in scenario.namespace_names():
        assert name not in listed
    if scenario.mode == "netns":
        assert len(scenario.namespace_names()) == 3  # central, blue, green
    assert not Path("/var/run/secrets/pods.eks.amazonaws.com").exists(), "the pods' tmpfs leaked to the host"


# --------------------------------------------------------------------------
# failures name their step


@pytest.mark.parametrize(("part", "step"), [("podid", 3), ("aws", 9)])
def test_a_missing_part_is_reported_with_its_step(tmp_path, part, step):
    missing = tmp_path / "not-installed" / part
    recorder = Recorder()
    scenario = Scenario(tmp_path / "work", recorder, mode="loopback", **{part: missing})
    with pytest.raises(StepFailed) as failed:
        try:
            scenario.run()
        finally:
            scenario.close()
    assert failed.value.number == step
    message = str(failed.value)
    assert message.startswith(f"step {step}: {STEPS[step - 1][1]}: "), message
    assert str(missing) in message and "missing" in message
    # What had started was stopped.
    assert all(not c.running() for c in scenario.children)
    assert all(rc == 0 for rc in scenario.exit_codes.values()), scenario.exit_codes


# --------------------------------------------------------------------------
# the demo


def _processes_under(path: str) -> list[str]:
    """Processes whose working directory or command line mention `path`."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if cwd.startswith(path) or path in cmdline:
            found.append(f"{pid}: {cmdline[:200]}")
    return found


def test_the_demo_cleans_up_after_ctrl_c():
    """Ctrl-C in the middle of `./demo.sh` (SIGINT to the whole foreground
    process group, as a terminal sends it): every process stopped, the
    namespaces and the work directory removed, and the last line says where
    it stopped."""
    proc = subprocess.Popen([sys.executable, str(REPO_ROOT / "scripts" / "demo.py")], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True, cwd=REPO_ROOT)
    lines: list[str] = []
    workdir = None
    # A reader thread hands the lines over, so a silent demo cannot hang the
    # wait: the deadline holds whether lines come or not.
    assert proc.stdout is not None
    received: queue.Queue[str | None] = queue.Queue()
    reader = threading.Thread(target=_read_lines, args=(proc.stdout, received), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                line = received.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail("the demo did not reach step 10 within 120 s:\n" + "\n".join(lines))
            if line is None:
                pytest.fail("the demo ended before step 10:\n" + "\n".join(lines))
            lines.append(line.rstrip("\n"))
            m = re.search(r"work directory \$WORK = (\S+)", line)
            if m:
                workdir = m.group(1)
            if "==> [10/15]" in line:  # node, agent, webhook, server, moto all running
                break
        assert workdir and Path(workdir).is_dir()
        assert _processes_under(workdir), "the demo's processes should be running now"
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=60)
        reader.join(timeout=10)
        assert not reader.is_alive(), "the demo's stdout stayed open after it exited"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    while not received.empty():
        rest = received.get_nowait()
        if rest is not None:
            lines.append(rest.rstrip("\n"))
    assert proc.returncode == 130, "\n".join(lines)
    assert re.match(r"demo interrupted during step 1[0-5] \(.*\): every process it started is stopped",
                    lines[-1]), lines[-1]
    assert not Path(workdir).exists()
    assert _processes_under(workdir) == []
    listed = _netns_list()
    assert f"-{proc.pid}" not in listed, listed


def _read_lines(stream, into: "queue.Queue[str | None]") -> None:
    """Puts each line of `stream` into `into`, then None at its end."""
    for line in stream:
        into.put(line)
    into.put(None)


def _netns_list() -> str:
    """`ip netns list` ("" without iproute2: then no namespace was made)."""
    if shutil.which("ip") is None:
        return ""
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


def _b64url(segment: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
