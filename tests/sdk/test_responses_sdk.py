"""OpenAI's Responses API through Sluice, with the official `openai` SDK, against an
OpenAI-format upstream (`chat`, translated to Chat Completions) and an Anthropic-format one
(`claude`, translated to Messages). Every client has max_retries=0.
"""

from __future__ import annotations

import json

import openai
import pytest

from conftest import CLAUDE_UPSTREAM_MODEL, TESTER_KEY, UPSTREAM_MODEL

MOCK_WORDS = (
    "Sluice is a fast gateway for models; this answer comes from its mock provider, "
    "one token per chunk."
).split()


def mock_text(chunks: int = 8) -> str:
    return "".join(MOCK_WORDS[i % len(MOCK_WORDS)] + " " for i in range(chunks))


WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}

UPSTREAMS = [pytest.param("chat", UPSTREAM_MODEL, "/v1/chat/completions", id="openai-upstream"),
             pytest.param("claude", CLAUDE_UPSTREAM_MODEL, "/v1/messages", id="anthropic-upstream")]


@pytest.fixture(scope="module")
def client(lane):
    c = lane.client(TESTER_KEY)
    yield c
    c.close()


@pytest.mark.parametrize("model,upstream,path", UPSTREAMS)
def test_responses_create(client, lane, model, upstream, path):
    r = client.responses.create(model=model, instructions="Be brief.", input="Say something.", max_output_tokens=64)
    assert r.object == "response" and r.status == "completed"
    assert r.output_text.strip() == mock_text(8).strip()
    assert r.model == upstream
    assert r.usage.output_tokens == 8 and r.usage.input_tokens > 0
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    sent = lane.mock_requests()[-1]
    assert sent["path"] == path
    body = json.loads(sent["body"])
    if model == "chat":
        assert body["messages"][0] == {"role": "system", "content": "Be brief."}
        assert body["max_tokens"] == 64
    else:
        assert body["system"] == "Be brief."
        assert body["max_tokens"] == 64


@pytest.mark.parametrize("model,upstream,path", UPSTREAMS)
def test_responses_stream(client, model, upstream, path):
    deltas = []
    with client.responses.stream(model=model, input="Stream please.") as stream:
        for event in stream:
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
        final = stream.get_final_response()
    assert "".join(deltas) == mock_text(8)
    assert final.output_text == mock_text(8)
    assert final.status == "completed"
    assert final.usage.output_tokens == 8


@pytest.mark.parametrize("model,upstream,path", UPSTREAMS)
@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
def test_responses_function_calling(client, model, upstream, path, streamed):
    kw = dict(model=model, input=[{"role": "user", "content": "Weather in mock?"}], tools=[WEATHER])
    if streamed:
        with client.responses.stream(**kw) as s:
            first = s.get_final_response()
    else:
        first = client.responses.create(**kw)
    calls = [o for o in first.output if o.type == "function_call"]
    assert len(calls) == 1, first.output
    assert calls[0].name == "get_weather"
    assert json.loads(calls[0].arguments) == {"city": "mock"}
    follow = client.responses.create(
        model=model,
        tools=[WEATHER],
        input=[
            {"role": "user", "content": "Weather in mock?"},
            {"type": "function_call", "call_id": calls[0].call_id, "name": "get_weather", "arguments": calls[0].arguments},
            {"type": "function_call_output", "call_id": calls[0].call_id, "output": "Sunny"},
        ],
    )
    assert follow.output_text.strip() == mock_text(8).strip()


def test_previous_response_id_is_refused_clearly(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model="chat", input="x", previous_response_id="resp_123")
    assert e.value.code == "unsupported_parameter"
    assert "previous_response_id" in e.value.message


def test_missing_input_is_400(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.post("/responses", body={"model": "chat"}, cast_to=object)
    assert e.value.code == "missing_required_parameter"


def test_stream_error_mid_way_raises(client):
    got = []
    with pytest.raises(openai.APIError):
        with client.responses.stream(model="claude", input="x", extra_body={"mock": {"error_after_chunks": 2}}) as s:
            for event in s:
                if event.type == "response.output_text.delta":
                    got.append(event.delta)
    assert "".join(got) == mock_text(2)
