"""AWS Bedrock. The mock's Converse surface is first checked with `boto3` (which signs requests
with SigV4 itself and decodes AWS event-stream framing itself), so the mock's signature check and
framing are AWS's, not merely ours; then the `openai` and `anthropic` SDKs reach a Bedrock
deployment through Sluice, which signs its own requests.
"""

from __future__ import annotations

import json

import anthropic
import boto3
import botocore.exceptions
import pytest
from botocore.config import Config

from conftest import AWS_KEY_ID, AWS_SECRET, TESTER_KEY

MOCK_WORDS = (
    "Sluice is a fast gateway for models; this answer comes from its mock provider, "
    "one token per chunk."
).split()
MODEL_ID = "anthropic.claude-3-haiku-20240307-v1:0"


def mock_text(chunks: int = 8) -> str:
    return "".join(MOCK_WORDS[i % len(MOCK_WORDS)] + " " for i in range(chunks))


def client(lane, secret: str = AWS_SECRET):
    return boto3.client(
        "bedrock-runtime", endpoint_url=lane.mock.base, region_name="us-east-1",
        aws_access_key_id=AWS_KEY_ID, aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )


def test_boto3_converse_against_the_mock(lane):
    r = client(lane).converse(
        modelId=MODEL_ID, system=[{"text": "Be brief."}],
        messages=[{"role": "user", "content": [{"text": "hello"}]}],
        inferenceConfig={"maxTokens": 64},
    )
    assert r["output"]["message"]["content"][0]["text"] == mock_text(8)
    assert r["stopReason"] == "end_turn" and r["usage"]["outputTokens"] == 8
    assert lane.mock_requests()[-1]["path"] == "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"


def test_boto3_converse_stream_against_the_mock(lane):
    r = client(lane).converse_stream(modelId=MODEL_ID, messages=[{"role": "user", "content": [{"text": "x"}]}])
    text, stop, usage = "", None, None
    for event in r["stream"]:
        if "contentBlockDelta" in event:
            text += event["contentBlockDelta"]["delta"].get("text", "")
        elif "messageStop" in event:
            stop = event["messageStop"]["stopReason"]
        elif "metadata" in event:
            usage = event["metadata"]["usage"]
    assert text == mock_text(8) and stop == "end_turn" and usage["outputTokens"] == 8


def test_boto3_tool_use_against_the_mock(lane):
    r = client(lane).converse(
        modelId=MODEL_ID, messages=[{"role": "user", "content": [{"text": "Weather?"}]}],
        toolConfig={"tools": [{"toolSpec": {"name": "get_weather", "inputSchema": {"json": {
            "type": "object", "properties": {"city": {"type": "string"}}}}}}]},
    )
    assert r["stopReason"] == "tool_use"
    assert r["output"]["message"]["content"][0]["toolUse"]["input"] == {"city": "mock"}


def test_the_mock_refuses_a_bad_signature(lane):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client(lane, secret="not-the-secret").converse(
            modelId=MODEL_ID, messages=[{"role": "user", "content": [{"text": "x"}]}])
    assert e.value.response["Error"]["Code"] == "InvalidSignatureException"


def test_openai_client_through_sluice_to_bedrock(lane):
    c = lane.client(TESTER_KEY)
    r = c.chat.completions.create(model="bedrock", messages=[{"role": "user", "content": "x"}], max_tokens=32)
    assert r.choices[0].message.content == mock_text(8)
    assert r.usage.completion_tokens == 8
    chunks = list(c.chat.completions.create(model="bedrock", messages=[{"role": "user", "content": "x"}],
                                            stream=True, stream_options={"include_usage": True}))
    assert "".join(x.choices[0].delta.content or "" for x in chunks if x.choices) == mock_text(8)
    assert chunks[-1].usage.completion_tokens == 8
    sent = lane.mock_requests()[-1]
    assert sent["path"].endswith("/converse-stream")
    assert dict(sent["headers"])["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={AWS_KEY_ID}/")


def test_anthropic_client_through_sluice_to_bedrock_with_tools(lane):
    c = anthropic.Anthropic(base_url=lane.gateway.base, api_key=TESTER_KEY, max_retries=0)
    tool = {"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}
    with c.messages.stream(model="bedrock", max_tokens=64, tools=[tool],
                           messages=[{"role": "user", "content": "Weather?"}]) as s:
        msg = s.get_final_message()
    assert msg.stop_reason == "tool_use"
    call = [b for b in msg.content if b.type == "tool_use"][0]
    assert call.input == {"city": "mock"}
    body = json.loads(lane.mock_requests()[-1]["body"])
    assert body["toolConfig"]["tools"][0]["toolSpec"]["name"] == "get_weather"
