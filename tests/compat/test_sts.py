"""Temporary credentials through the broker's STS endpoint with boto3 and botocore's own
credential providers: AssumeRole (signed) and AssumeRoleWithWebIdentity (the IRSA-like
flow, driven only by environment variables, as in a pod)."""

import os
import subprocess
import sys
import textwrap

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import ACCESS_KEY, REGION, SECRET_KEY, wait_active, web_identity_token

ROLE_ARN = "arn:aws:iam::000000000000:role/producer-sts"
NO_RETRY = Config(retries={"max_attempts": 1, "mode": "standard"})


def sts(broker, key=ACCESS_KEY, secret=SECRET_KEY):
    return boto3.client("sts", endpoint_url=broker.endpoint_url, region_name=REGION,
                        aws_access_key_id=key, aws_secret_access_key=secret, config=NO_RETRY)


def kinesis_with(broker, creds):
    return boto3.client("kinesis", endpoint_url=broker.endpoint_url, region_name=REGION,
                        aws_access_key_id=creds["AccessKeyId"],
                        aws_secret_access_key=creds["SecretAccessKey"],
                        aws_session_token=creds["SessionToken"], config=NO_RETRY)


@pytest.fixture
def sts_stream(kinesis, stream_name):
    name = f"sts-{stream_name}"[:100]
    kinesis.create_stream(StreamName=name, ShardCount=1)
    wait_active(kinesis, name)
    return name


def test_assume_role_gives_scoped_temporary_credentials(broker, kinesis, sts_stream):
    out = sts(broker).assume_role(RoleArn=ROLE_ARN, RoleSessionName="boto3-session")
    creds = out["Credentials"]
    assert creds["AccessKeyId"].startswith("ASIA")
    assert out["AssumedRoleUser"]["Arn"] == \
        "arn:aws:sts::000000000000:assumed-role/producer-sts/boto3-session"
    k = kinesis_with(broker, creds)
    k.put_record(StreamName=sts_stream, PartitionKey="k", Data=b"temporary")
    with pytest.raises(ClientError) as e:
        k.delete_stream(StreamName=sts_stream)
    assert e.value.response["Error"]["Code"] == "AccessDeniedException"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    ident = boto3.client("sts", endpoint_url=broker.endpoint_url, region_name=REGION,
                         aws_access_key_id=creds["AccessKeyId"],
                         aws_secret_access_key=creds["SecretAccessKey"],
                         aws_session_token=creds["SessionToken"]).get_caller_identity()
    assert ident["Arn"].endswith("assumed-role/producer-sts/boto3-session")


def test_assume_role_refusals(broker):
    with pytest.raises(ClientError) as e:
        sts(broker, "AKIDRIFFLENOBODY", "riffle-nobody-secret").assume_role(
            RoleArn=ROLE_ARN, RoleSessionName="x1")
    assert e.value.response["Error"]["Code"] == "AccessDenied"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    with pytest.raises(ClientError) as e:
        sts(broker, ACCESS_KEY, "wrong-secret").assume_role(RoleArn=ROLE_ARN, RoleSessionName="x1")
    assert e.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    with pytest.raises(ClientError) as e:
        sts(broker, "AKIDUNKNOWN", "x").assume_role(RoleArn=ROLE_ARN, RoleSessionName="x1")
    assert e.value.response["Error"]["Code"] == "InvalidClientTokenId"


def test_web_identity_through_the_standard_chain(broker, kinesis, sts_stream, tmp_path):
    """A pod's environment: nothing but variables and a token file."""
    token = tmp_path / "token"
    token.write_text(web_identity_token("team", "checkout"))
    script = textwrap.dedent(f"""
        import boto3, sys
        from botocore.exceptions import ClientError
        k = boto3.client("kinesis")
        k.put_record(StreamName={sts_stream!r}, PartitionKey="k", Data=b"from a pod")
        try:
            k.delete_stream(StreamName={sts_stream!r})
            sys.exit("delete was allowed")
        except ClientError as e:
            assert e.response["Error"]["Code"] == "AccessDeniedException", e.response
        print(boto3.client("sts").get_caller_identity()["Arn"])
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ROLE_ARN=ROLE_ARN,
        AWS_WEB_IDENTITY_TOKEN_FILE=str(token),
        AWS_ROLE_SESSION_NAME="pod-1",
        AWS_ENDPOINT_URL_STS=broker.endpoint_url,
        AWS_ENDPOINT_URL_KINESIS=broker.endpoint_url,
        AWS_DEFAULT_REGION=REGION,  # boto3 reads only this one
        AWS_CONFIG_FILE=str(tmp_path / "config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "credentials"),
    )
    r = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "arn:aws:sts::000000000000:assumed-role/producer-sts/pod-1"


def test_web_identity_refusals(broker):
    client = boto3.client("sts", endpoint_url=broker.endpoint_url, region_name=REGION,
                          aws_access_key_id="unused", aws_secret_access_key="unused",
                          config=NO_RETRY)
    cases = [
        (web_identity_token("team", "intruder"), "AccessDenied"),
        (web_identity_token("team", "checkout", audience="sts.amazonaws.com"), "InvalidIdentityToken"),
        (web_identity_token("team", "checkout", lifetime=-120), "ExpiredTokenException"),
    ]
    for token, code in cases:
        with pytest.raises(ClientError) as e:
            client.assume_role_with_web_identity(RoleArn=ROLE_ARN, RoleSessionName="pod-1",
                                                 WebIdentityToken=token)
        assert e.value.response["Error"]["Code"] == code, e.value.response
