"""moto as STS/IAM/S3 with IAM enforcement, set up as the article's scenario.

Used by the Python suites (import) and by the Rust integration tests
(`python moto_env.py serve`: prints one JSON line with the endpoint and the
ids it created, then serves until its standard input closes).

Set-up runs while moto still accepts unsigned calls; then
`/moto-api/reset-auth 0` makes moto enforce IAM: it checks signatures against
its own access keys, role trust policies on AssumeRole, and identity policies
on every call (S3 included).
"""

import json
import sys

import boto3
import requests
from moto.server import ThreadedMotoServer

ACCOUNT = "123456789012"
REGION = "us-east-1"
BUCKET = "sample"
OBJECTS = ["a.png", "b/c.txt"]
ROLE = "simple-pod-identity-role"


def start():
    """Starts moto on a free loopback port; returns (server, endpoint)."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, f"http://{host}:{port}"


def client(service, endpoint, key="unused", secret="unused", token=None):
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        aws_session_token=token,
    )


def trust_policy(principal, condition=None):
    statement = {
        "Effect": "Allow",
        "Principal": {"AWS": principal},
        "Action": ["sts:AssumeRole", "sts:TagSession"],
    }
    if condition:
        statement["Condition"] = condition
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


S3_READ = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket"], "Resource": "arn:aws:s3:::*"}
        ],
    }
)

ASSUME_ANY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["sts:AssumeRole", "sts:TagSession"], "Resource": "*"}],
    }
)


def create_role(endpoint, name, trust, policy=None):
    iam = client("iam", endpoint)
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    if policy:
        iam.put_role_policy(RoleName=name, PolicyName=f"{name}-inline", PolicyDocument=policy)
    return arn


def setup(endpoint):
    """The article's world, before auth is enforced. Returns what was made."""
    iam = client("iam", endpoint)
    iam.create_user(UserName="podid-broker")
    iam.put_user_policy(UserName="podid-broker", PolicyName="assume", PolicyDocument=ASSUME_ANY)
    key = iam.create_access_key(UserName="podid-broker")["AccessKey"]
    broker_arn = f"arn:aws:iam::{ACCOUNT}:user/podid-broker"
    # The article's role: trusts the broker once, reads S3.
    role_arn = create_role(endpoint, ROLE, trust_policy(broker_arn), S3_READ)
    # A role whose trust policy names someone else.
    untrusted_arn = create_role(
        endpoint, "untrusted-role", trust_policy(f"arn:aws:iam::{ACCOUNT}:user/somebody-else"), S3_READ
    )
    # A first hop for role chaining: may assume other roles.
    hop_arn = create_role(endpoint, "hop-role", trust_policy(broker_arn), ASSUME_ANY)
    s3 = client("s3", endpoint)
    s3.create_bucket(Bucket=BUCKET)
    for name in OBJECTS:
        s3.put_object(Bucket=BUCKET, Key=name, Body=b"x")
    return {
        "endpoint": endpoint,
        "account": ACCOUNT,
        "region": REGION,
        "broker_arn": broker_arn,
        "broker_access_key_id": key["AccessKeyId"],
        "broker_secret_access_key": key["SecretAccessKey"],
        "role_arn": role_arn,
        "untrusted_role_arn": untrusted_arn,
        "hop_role_arn": hop_arn,
        "bucket": BUCKET,
    }


def enforce_auth(endpoint):
    """From now on moto enforces IAM for every call."""
    r = requests.post(f"{endpoint}/moto-api/reset-auth", data=b"0", timeout=10)
    r.raise_for_status()


def create_target_role(endpoint, name, external_id):
    """A chaining target: any principal with the right ExternalId (moto matches
    `AWS` principals as exact strings, so the first hop's session ARN cannot be
    named; the ExternalId condition does the work)."""
    r = requests.post(f"{endpoint}/moto-api/reset-auth", data=b"inf", timeout=10)
    r.raise_for_status()
    try:
        return create_role(
            endpoint, name, trust_policy("*", {"StringEquals": {"sts:ExternalId": external_id}}), S3_READ
        )
    finally:
        enforce_auth(endpoint)


if __name__ == "__main__":
    if sys.argv[1:] != ["serve"]:
        sys.exit("usage: moto_env.py serve")
    server, endpoint = start()
    world = setup(endpoint)
    enforce_auth(endpoint)
    print(json.dumps(world), flush=True)
    sys.stdin.read()
    server.stop()
