"""Anthropic Messages through Sluice, driven by the official `anthropic` and `openai` SDKs.

Three paths, each over real HTTP to a real `sluice serve` in front of the real mock:
- Anthropic SDK → Sluice → Anthropic-format upstream (model `claude`): passed through untouched.
- Anthropic SDK → Sluice → OpenAI-format upstream (model `chat`): translated both ways.
- OpenAI SDK → Sluice → Anthropic-format upstream (model `claude`): translated both ways.

The mock checks what Anthropic checks (x-api-key, anthropic-version, max_tokens), so a request the
gateway built wrongly fails here. Clients have max_retries=0: one SDK call is one HTTP request.
"""

from __future__ import annotations

import base64
import json
import secrets

import anthropic
import openai
import pytest

from conftest import CLAUDE_UPSTREAM_MODEL, MOCK_CREDENTIAL, TESTER_KEY, UPSTREAM_MODEL

MOCK_WORDS = (
    "Sluice is a fast gateway for models; this answer comes from its mock provider, "
    "one token per chunk."
).split()


def mock_text(chunks: int = 8) -> str:
    return "".join(MOCK_WORDS[i % len(MOCK_WORDS)] + " " for i in range(chunks))


WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city"],
    },
}
WEATHER_INPUT = {"city": "mock", "days": 1}
OPENAI_WEATHER = {
    "type": "function",
    "function": {"name": WEATHER["name"], "description": WEATHER["description"], "parameters": WEATHER["input_schema"]},
}
# A 1×1 PNG.
PNG = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
    )
).decode()

# Both directions: the upstream speaks Anthropic (claude) or OpenAI (chat).
UPSTREAMS = [pytest.param("claude", CLAUDE_UPSTREAM_MODEL, id="anthropic-upstream"),
             pytest.param("chat", UPSTREAM_MODEL, id="openai-upstream")]


@pytest.fixture(scope="module")
def oa(lane):
    c = lane.client(TESTER_KEY)
    yield c
    c.close()


def last_upstream_request(lane) -> dict:
    return lane.mock_requests()[-1]


# --- Anthropic SDK, both upstream formats ------------------------------------------------------


@pytest.mark.parametrize("model,upstream", UPSTREAMS)
def test_messages_text(claude, lane, model, upstream):
    msg = claude.messages.create(
        model=model,
        max_tokens=64,
        system="Be brief.",
        messages=[{"role": "user", "content": "Say something."}],
    )
    assert msg.type == "message" and msg.role == "assistant"
    assert msg.content[0].type == "text"
    assert msg.content[0].text.strip() == mock_text(8).strip()
    assert msg.stop_reason == "end_turn"
    assert msg.model == upstream
    assert msg.usage.input_tokens > 0 and msg.usage.output_tokens == 8
    sent = last_upstream_request(lane)
    body = json.loads(sent["body"])
    headers = dict(sent["headers"])
    if model == "claude":
        # Passed through: the client's own body, model swapped, gateway's credential.
        assert sent["path"] == "/v1/messages"
        assert body["system"] == "Be brief."
        assert headers["x-api-key"] == MOCK_CREDENTIAL
        assert "anthropic-version" in headers
        assert "authorization" not in headers
    else:
        assert sent["path"] == "/v1/chat/completions"
        assert body["messages"][0] == {"role": "system", "content": "Be brief."}
        assert body["max_tokens"] == 64
        assert headers["authorization"] == f"Bearer {MOCK_CREDENTIAL}"
    assert body["model"] == upstream
    assert TESTER_KEY not in json.dumps(sent)


@pytest.mark.parametrize("model,upstream", UPSTREAMS)
def test_messages_stream(claude, model, upstream):
    with claude.messages.stream(
        model=model, max_tokens=64, messages=[{"role": "user", "content": "Stream please."}]
    ) as stream:
        pieces = [t for t in stream.text_stream]
        final = stream.get_final_message()
    assert len(pieces) == 8, pieces
    assert "".join(pieces) == mock_text(8)
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 8
    assert final.usage.input_tokens > 0
    assert final.model == upstream


@pytest.mark.parametrize("model,upstream", UPSTREAMS)
@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
def test_tool_use_round_trip(claude, lane, model, upstream, streamed):
    messages = [{"role": "user", "content": "Weather in mock?"}]
    kw = dict(model=model, max_tokens=64, tools=[WEATHER], messages=messages)
    if streamed:
        with claude.messages.stream(**kw) as s:
            first = s.get_final_message()
    else:
        first = claude.messages.create(**kw)
    assert first.stop_reason == "tool_use"
    calls = [b for b in first.content if b.type == "tool_use"]
    assert len(calls) == 1
    assert calls[0].name == "get_weather"
    assert calls[0].input == WEATHER_INPUT
    # Send the result back: the model answers in text.
    messages += [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": calls[0].id, "content": "Sunny"}]},
    ]
    second = claude.messages.create(model=model, max_tokens=64, tools=[WEATHER], messages=messages)
    assert second.stop_reason == "end_turn"
    assert second.content[0].text.strip() == mock_text(8).strip()
    if model == "chat":
        # The OpenAI upstream saw the tool result as a `tool` message tied to the call.
        body = json.loads(last_upstream_request(lane)["body"])
        tool_msgs = [m for m in body["messages"] if m["role"] == "tool"]
        assert tool_msgs == [{"role": "tool", "tool_call_id": calls[0].id, "content": "Sunny"}]


def test_image_reaches_an_openai_upstream_as_a_data_url(claude, lane):
    claude.messages.create(
        model="chat",
        max_tokens=16,
        messages=[{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
            {"type": "text", "text": "What is this?"},
        ]}],
    )
    body = json.loads(last_upstream_request(lane)["body"])
    parts = body["messages"][0]["content"]
    assert parts[0] == {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}
    assert parts[1] == {"type": "text", "text": "What is this?"}


def test_stop_sequence_and_max_tokens(claude):
    msg = claude.messages.create(
        model="claude", max_tokens=64, stop_sequences=["END"], messages=[{"role": "user", "content": "x"}]
    )
    assert msg.stop_reason == "stop_sequence" and msg.stop_sequence == "END"
    cut = claude.messages.create(model="chat", max_tokens=3, messages=[{"role": "user", "content": "x"}],
                                 extra_body={"mock": {"chunks": 3}})
    assert cut.stop_reason == "end_turn"
    cut = claude.messages.create(model="claude", max_tokens=3, messages=[{"role": "user", "content": "x"}])
    assert cut.stop_reason == "max_tokens" and cut.usage.output_tokens == 3


def test_cache_tokens_are_reported(claude, oa):
    msg = claude.messages.create(
        model="claude", max_tokens=16, messages=[{"role": "user", "content": "x"}],
        extra_body={"mock": {"cached_tokens": 100, "cache_write_tokens": 20}},
    )
    assert msg.usage.cache_read_input_tokens == 100
    assert msg.usage.cache_creation_input_tokens == 20
    # Through the OpenAI SDK the same answer counts cached tokens inside prompt_tokens.
    resp = oa.chat.completions.create(
        model="claude", messages=[{"role": "user", "content": "x"}],
        extra_body={"mock": {"cached_tokens": 100, "cache_write_tokens": 20}},
    )
    assert resp.usage.prompt_tokens_details.cached_tokens == 100
    assert resp.usage.prompt_tokens == msg.usage.input_tokens + 120


# --- errors in Anthropic's format ---------------------------------------------------------------


def test_wrong_key_is_authentication_error(lane):
    c = anthropic.Anthropic(base_url=lane.gateway.base, api_key="sk-wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as e:
        c.messages.create(model="claude", max_tokens=8, messages=[{"role": "user", "content": "x"}])
    assert e.value.body["error"]["type"] == "authentication_error"


def test_bearer_auth_is_accepted_too(lane):
    c = anthropic.Anthropic(base_url=lane.gateway.base, auth_token=TESTER_KEY, max_retries=0)
    msg = c.messages.create(model="claude", max_tokens=8, messages=[{"role": "user", "content": "x"}])
    assert msg.content[0].type == "text"


@pytest.mark.parametrize("model", ["claude", "chat"])
def test_upstream_rate_limit_is_rate_limit_error(claude, model):
    with pytest.raises(anthropic.RateLimitError) as e:
        claude.messages.create(model=model, max_tokens=8, messages=[{"role": "user", "content": "x"}],
                               extra_body={"mock": {"status": 429, "retry_after_s": 7}})
    assert e.value.body["error"]["type"] == "rate_limit_error"
    assert e.value.response.headers["retry-after"] == "7"


def test_upstream_overloaded_is_overloaded_error(claude):
    with pytest.raises(anthropic.APIStatusError) as e:
        claude.messages.create(model="claude", max_tokens=8, messages=[{"role": "user", "content": "x"}],
                               extra_body={"mock": {"status": 529}})
    assert e.value.status_code == 503
    assert e.value.body["error"]["type"] == "overloaded_error"


@pytest.mark.parametrize("model", ["claude", "chat"])
def test_overloaded_inside_a_200_stream_raises(claude, model):
    error_type = "overloaded_error" if model == "claude" else "server_error"
    got = []
    with pytest.raises(anthropic.APIStatusError) as e:
        with claude.messages.stream(
            model=model, max_tokens=64, messages=[{"role": "user", "content": "x"}],
            extra_body={"mock": {"error_after_chunks": 3, "error_type": error_type}},
        ) as s:
            for t in s.text_stream:
                got.append(t)
    assert "".join(got) == mock_text(3)
    assert e.value.body["error"]["type"] in ("overloaded_error", "api_error")


def test_parameter_openai_cannot_express_is_refused_then_dropped_where_the_route_says(claude, lane):
    kw = dict(model="chat", max_tokens=8, messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.BadRequestError) as e:
        claude.messages.create(**kw, extra_body={"top_k": 5})
    assert "top_k" in e.value.body["error"]["message"]
    msg = claude.messages.create(**kw, extra_body={"top_k": 5}, extra_headers={"x-test-route": "lenient"})
    assert msg.content[0].type == "text"
    assert "top_k" not in json.loads(last_upstream_request(lane)["body"])


# --- OpenAI SDK against an Anthropic upstream ---------------------------------------------------


def test_openai_chat_against_anthropic_upstream(oa, lane):
    resp = oa.chat.completions.create(
        model="claude",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}],
        max_tokens=32,
        stop=["END"],
    )
    assert resp.choices[0].message.content.strip() == mock_text(8).strip()
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage.completion_tokens == 8
    assert resp.model == CLAUDE_UPSTREAM_MODEL
    sent = last_upstream_request(lane)
    body = json.loads(sent["body"])
    assert sent["path"] == "/v1/messages"
    assert body["system"] == "Be brief."
    assert body["max_tokens"] == 32
    assert body["stop_sequences"] == ["END"]


def test_openai_default_max_tokens_for_anthropic(oa, lane):
    oa.chat.completions.create(model="claude", messages=[{"role": "user", "content": "x"}])
    assert json.loads(last_upstream_request(lane)["body"])["max_tokens"] == 4096


def test_openai_stream_against_anthropic_upstream(oa):
    stream = oa.chat.completions.create(
        model="claude", messages=[{"role": "user", "content": "x"}], stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == mock_text(8)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 8


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
def test_openai_tools_against_anthropic_upstream(oa, streamed):
    kw = dict(model="claude", messages=[{"role": "user", "content": "Weather?"}], tools=[OPENAI_WEATHER])
    if streamed:
        chunks = list(oa.chat.completions.create(**kw, stream=True))
        calls = {}
        for c in chunks:
            for tc in (c.choices[0].delta.tool_calls or []) if c.choices else []:
                entry = calls.setdefault(tc.index, {"id": None, "name": None, "args": ""})
                entry["id"] = tc.id or entry["id"]
                if tc.function and tc.function.name:
                    entry["name"] = tc.function.name
                if tc.function and tc.function.arguments:
                    entry["args"] += tc.function.arguments
        assert list(calls) == [0]
        call = calls[0]
        assert call["name"] == "get_weather" and json.loads(call["args"]) == WEATHER_INPUT
        finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        assert finish == ["tool_calls"]
    else:
        resp = oa.chat.completions.create(**kw)
        msg = resp.choices[0].message
        assert resp.choices[0].finish_reason == "tool_calls"
        assert msg.tool_calls[0].function.name == "get_weather"
        assert json.loads(msg.tool_calls[0].function.arguments) == WEATHER_INPUT
        call = {"id": msg.tool_calls[0].id}
    # The tool result goes back and the answer is text.
    follow = oa.chat.completions.create(
        model="claude",
        tools=[OPENAI_WEATHER],
        messages=[
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": call["id"], "type": "function", "function": {"name": "get_weather", "arguments": json.dumps(WEATHER_INPUT)}}]},
            {"role": "tool", "tool_call_id": call["id"], "content": "Sunny"},
        ],
    )
    assert follow.choices[0].finish_reason == "stop"


def test_openai_n_greater_than_one_is_refused_for_anthropic(oa):
    with pytest.raises(openai.BadRequestError) as e:
        oa.chat.completions.create(model="claude", messages=[{"role": "user", "content": "x"}], n=2)
    assert e.value.code == "unsupported_parameter"
    assert "'n'" in e.value.message


def test_openai_stream_with_overloaded_anthropic_upstream_raises(oa):
    stream = oa.chat.completions.create(
        model="claude", messages=[{"role": "user", "content": "x"}], stream=True,
        extra_body={"mock": {"error_after_chunks": 2}},
    )
    got = []
    with pytest.raises(openai.APIError) as e:
        for c in stream:
            if c.choices:
                got.append(c.choices[0].delta.content or "")
    assert "".join(got) == mock_text(2)
    assert "Overloaded" in str(e.value)


# --- the mock itself, checked with Anthropic's own client ---------------------------------------


def test_official_anthropic_client_against_the_mock(lane):
    direct = anthropic.Anthropic(base_url=lane.mock.base, api_key=MOCK_CREDENTIAL, max_retries=0, timeout=15.0)
    msg = direct.messages.create(model="claude-mock", max_tokens=64, system="Be brief.",
                                 messages=[{"role": "user", "content": "hi"}])
    assert msg.content[0].text.strip() == mock_text(8).strip() and msg.stop_reason == "end_turn"
    with direct.messages.stream(model="claude-mock", max_tokens=64, tools=[WEATHER],
                                messages=[{"role": "user", "content": "Weather?"}]) as s:
        final = s.get_final_message()
    assert final.stop_reason == "tool_use"
    assert [b for b in final.content if b.type == "tool_use"][0].input == WEATHER_INPUT
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(base_url=lane.mock.base, api_key="wrong", max_retries=0).messages.create(
            model="m", max_tokens=8, messages=[{"role": "user", "content": "x"}])
    # Like Anthropic, the mock refuses a request without anthropic-version.
    import urllib.request, urllib.error
    req = urllib.request.Request(lane.mock.base + "/v1/messages", method="POST",
                                 data=json.dumps({"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "x"}]}).encode(),
                                 headers={"x-api-key": MOCK_CREDENTIAL, "content-type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=5)
    assert e.value.code == 400
    assert json.loads(e.value.read())["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("model,upstream", UPSTREAMS)
def test_a_response_stage_rewrites_a_messages_stream(claude, model, upstream):
    expected = mock_text(40).replace("gateway", "GATEWAY")
    with claude.messages.stream(
        model=model,
        max_tokens=64,
        messages=[{"role": "user", "content": "Stream please."}],
        extra_headers={"x-test-route": "rewrite"},
        extra_body={"mock": {"chunks": 40}},
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == expected
    assert final.content[0].text == expected
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 40


def _replayable(events):
    """What a client makes of a Messages stream: text, tool inputs, stop reason, output tokens."""
    text, tools, stop, output = "", {}, None, None
    for e in events:
        if e.type == "content_block_start" and e.content_block.type == "tool_use":
            tools[e.index] = {"name": e.content_block.name, "input": ""}
        elif e.type == "content_block_delta":
            if e.delta.type == "text_delta":
                text += e.delta.text
            elif e.delta.type == "input_json_delta":
                tools[e.index]["input"] += e.delta.partial_json
        elif e.type == "message_delta":
            stop = e.delta.stop_reason
            output = e.usage.output_tokens
    for t in tools.values():
        t["input"] = json.loads(t["input"] or "{}")
    return text, tools, stop, output


@pytest.mark.parametrize("tools", [False, True], ids=["text", "tool-use"])
@pytest.mark.parametrize("model,upstream", UPSTREAMS)
def test_a_cached_messages_stream_replays_what_the_live_one_said(claude, model, upstream, tools):
    nonce = secrets.token_hex(6)
    kw = dict(
        model=model,
        max_tokens=64,
        messages=[{"role": "user", "content": f"Weather? ({nonce})"}],
        stream=True,
        extra_headers={"x-test-route": "cached"},
        extra_body={"mock": {"chunks": 12}, "temperature": 0},
    )
    if tools:
        kw["tools"] = [WEATHER]
    live = claude.messages.with_raw_response.create(**kw)
    assert live.headers.get("x-sluice-cache") == "miss"
    live_answer = _replayable(live.parse())
    replay = claude.messages.with_raw_response.create(**kw)
    assert replay.headers.get("x-sluice-cache") == "hit"
    assert _replayable(replay.parse()) == live_answer
    assert live_answer[3]
    if tools:
        assert live_answer[2] == "tool_use"
        assert [t["input"] for t in live_answer[1].values()] == [WEATHER_INPUT]
