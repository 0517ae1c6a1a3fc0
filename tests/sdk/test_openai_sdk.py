"""The official `openai` Python SDK against a real Sluice gateway in front of the real mock provider.

Every client has max_retries=0, so each SDK call is exactly one HTTP request and an error the
gateway returns is the error the test sees. Each request carries its own `x-request-id` so the
access-log test at the end of the module can find the line each one wrote.
"""

from __future__ import annotations

import json
import secrets
import time
import urllib.error
import urllib.request

import openai
import pytest

from conftest import LIMITED_KEY, MOCK_CREDENTIAL, TESTER_KEY, UPSTREAM_MODEL, WRONG_CREDENTIAL

# The mock's fixed token list; each content token is one word plus a space.
MOCK_WORDS = (
    "Sluice is a fast gateway for models; this answer comes from its mock provider, "
    "one token per chunk."
).split()


def mock_text(chunks: int = 8) -> str:
    return "".join(MOCK_WORDS[i % len(MOCK_WORDS)] + " " for i in range(chunks))


MESSAGES = [{"role": "user", "content": "Say something."}]

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "days": {"type": "integer"},
                "metric": {"type": "boolean"},
            },
            "required": ["city"],
        },
    },
}
WEATHER_ARGS = {"city": "mock", "days": 1, "metric": True}


def rid(name: str) -> dict:
    """Headers that tag a request for the access-log checks."""
    return {"x-request-id": f"sdk-{name}"}


@pytest.fixture(scope="module")
def limited(lane):
    c = lane.client(LIMITED_KEY)
    yield c
    c.close()


# --- chat, non-streaming ---------------------------------------------------------------------


def test_chat_non_streaming(client):
    resp = client.chat.completions.create(model="chat", messages=MESSAGES, extra_headers=rid("chat"))
    assert resp.choices, resp
    assert resp.choices[0].message.content == mock_text(8)
    assert resp.choices[0].finish_reason == "stop"
    assert resp.model == UPSTREAM_MODEL
    assert resp.usage is not None
    assert resp.usage.prompt_tokens > 0
    assert resp.usage.completion_tokens == 8
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens


def test_chat_mock_knobs_pass_through(client):
    resp = client.chat.completions.create(
        model="chat", messages=MESSAGES, extra_body={"mock": {"chunks": 3}}
    )
    assert resp.choices[0].message.content == mock_text(3)
    assert resp.usage.completion_tokens == 3


def test_upstream_sees_gateway_credential_not_client_key(lane, client):
    client.chat.completions.create(
        model="chat", messages=MESSAGES, extra_headers={"x-request-id": "sdk-upstream-auth"}
    )
    reqs = [r for r in lane.mock_requests() if r["path"].endswith("/chat/completions")]
    assert reqs, "the mock saw no chat request"
    last = reqs[-1]
    headers = {k.lower(): v for k, v in last["headers"]}
    assert headers.get("authorization") == f"Bearer {MOCK_CREDENTIAL}"
    assert TESTER_KEY not in json.dumps(last)
    body = json.loads(last["body"]) if isinstance(last["body"], str) else last["body"]
    assert body["model"] == UPSTREAM_MODEL


# --- chat, streaming -------------------------------------------------------------------------


def test_stream_text_and_no_usage_without_include_usage(client):
    stream = client.chat.completions.create(
        model="chat", messages=MESSAGES, stream=True, extra_headers=rid("stream-nousage")
    )
    text, chunks, finish = "", [], None
    for chunk in stream:
        chunks.append(chunk)
        for choice in chunk.choices:
            if choice.delta and choice.delta.content:
                text += choice.delta.content
            if choice.finish_reason:
                finish = choice.finish_reason
    assert text == mock_text(8)
    assert finish == "stop"
    with_usage = [c for c in chunks if getattr(c, "usage", None) is not None]
    assert with_usage == [], f"usage leaked to a client that did not ask for it: {with_usage}"
    assert all(c.choices for c in chunks), "a chunk with empty choices reached the client"


def test_stream_include_usage(client):
    stream = client.chat.completions.create(
        model="chat",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers=rid("stream-usage"),
    )
    chunks = list(stream)
    assert len(chunks) >= 2
    text = "".join(
        ch.delta.content or "" for c in chunks for ch in c.choices if ch.delta is not None
    )
    assert text == mock_text(8)
    last = chunks[-1]
    assert last.usage is not None, f"last chunk has no usage: {last}"
    assert last.choices == []
    assert last.usage.completion_tokens == 8
    assert last.usage.prompt_tokens > 0
    assert all(c.usage is None for c in chunks[:-1])


# --- tools -----------------------------------------------------------------------------------


def test_tool_call_non_streaming(client):
    resp = client.chat.completions.create(
        model="chat",
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER_TOOL],
    )
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert calls and len(calls) == 1
    call = calls[0]
    assert call.id == "call_mock_1"
    assert call.type == "function"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == WEATHER_ARGS


def test_tool_call_streaming(client):
    stream = client.chat.completions.create(
        model="chat",
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER_TOOL],
        stream=True,
    )
    calls: dict[int, dict] = {}
    finish = None
    for chunk in stream:
        for choice in chunk.choices:
            if choice.finish_reason:
                finish = choice.finish_reason
            for tc in choice.delta.tool_calls or []:
                acc = calls.setdefault(tc.index, {"id": None, "name": "", "arguments": ""})
                if tc.id:
                    acc["id"] = tc.id
                if tc.function is not None:
                    acc["name"] += tc.function.name or ""
                    acc["arguments"] += tc.function.arguments or ""
    assert finish == "tool_calls"
    assert list(calls) == [0], calls
    assert calls[0]["id"] == "call_mock_1"
    assert calls[0]["name"] == "get_weather"
    assert json.loads(calls[0]["arguments"]) == WEATHER_ARGS


def test_tool_result_gets_text_answer(client):
    resp = client.chat.completions.create(
        model="chat",
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_mock_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": json.dumps(WEATHER_ARGS)},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_mock_1", "content": "sunny"},
        ],
        tools=[WEATHER_TOOL],
    )
    assert resp.choices[0].finish_reason == "stop"
    assert resp.choices[0].message.content == mock_text(8)
    assert not resp.choices[0].message.tool_calls


# --- embeddings ------------------------------------------------------------------------------


def test_embeddings_default_base64(client):
    resp = client.embeddings.create(
        model="chat",
        input=["one", "two", "three"],
        extra_body={"mock": {"dimensions": 16}},
        extra_headers=rid("embed-b64"),
    )
    assert [d.index for d in resp.data] == [0, 1, 2]
    for d in resp.data:
        assert isinstance(d.embedding, list)
        assert len(d.embedding) == 16
        assert all(isinstance(x, float) for x in d.embedding)
    assert resp.usage is not None and resp.usage.prompt_tokens > 0


def test_embeddings_float(client):
    resp = client.embeddings.create(
        model="chat",
        input=["alpha", "beta"],
        encoding_format="float",
        extra_body={"mock": {"dimensions": 8}},
    )
    assert [d.index for d in resp.data] == [0, 1]
    assert all(len(d.embedding) == 8 for d in resp.data)
    assert all(isinstance(x, float) for d in resp.data for x in d.embedding)


def test_embeddings_base64_and_float_agree(client):
    kw = dict(model="chat", input=["same input"], extra_body={"mock": {"dimensions": 12}})
    b64 = client.embeddings.create(**kw)
    flt = client.embeddings.create(encoding_format="float", **kw)
    assert b64.data[0].embedding == pytest.approx(flt.data[0].embedding, rel=1e-6, abs=1e-6)


# --- models ----------------------------------------------------------------------------------


def test_models_list_tester(client):
    ids = sorted(m.id for m in client.models.list())
    assert ids == ["azure-chat", "badcred", "bedrock", "chat", "claude", "gemini", "other"]


def test_models_list_limited(limited):
    ids = sorted(m.id for m in limited.models.list())
    assert ids == ["other"]


def test_models_retrieve(client, limited):
    m = client.models.retrieve("chat")
    assert m.id == "chat"
    assert limited.models.retrieve("other").id == "other"
    with pytest.raises(openai.NotFoundError) as ei:
        limited.models.retrieve("chat")
    assert ei.value.status_code == 404


# --- errors ----------------------------------------------------------------------------------


def test_wrong_key_is_authentication_error(lane):
    bad = lane.client("sk-sluice-not-a-real-key-000000")
    with pytest.raises(openai.AuthenticationError) as ei:
        bad.chat.completions.create(model="chat", messages=MESSAGES, extra_headers=rid("badkey"))
    assert ei.value.status_code == 401
    assert "sk-sluice-not-a-real-key" not in ei.value.response.text


def test_unknown_model_is_not_found(client):
    with pytest.raises(openai.NotFoundError) as ei:
        client.chat.completions.create(
            model="no-such-model", messages=MESSAGES, extra_headers=rid("unknown-model")
        )
    assert ei.value.status_code == 404


def test_limited_key_forbidden_model(limited):
    with pytest.raises(openai.PermissionDeniedError) as ei:
        limited.chat.completions.create(model="chat", messages=MESSAGES, extra_headers=rid("forbidden"))
    assert ei.value.status_code == 403
    # ...while the model it is allowed works.
    ok = limited.chat.completions.create(model="other", messages=MESSAGES)
    assert ok.choices[0].message.content == mock_text(8)


def test_upstream_429_is_rate_limit_with_retry_after(client):
    with pytest.raises(openai.RateLimitError) as ei:
        client.chat.completions.create(
            model="chat",
            messages=MESSAGES,
            extra_body={"mock": {"status": 429, "retry_after_s": 7}},
            extra_headers=rid("429"),
        )
    assert ei.value.status_code == 429
    assert ei.value.response.headers.get("retry-after") == "7"


def test_upstream_400_stays_400(client):
    with pytest.raises(openai.BadRequestError) as ei:
        client.chat.completions.create(
            model="chat", messages=MESSAGES, extra_body={"mock": {"status": 400}}
        )
    assert ei.value.status_code == 400


def test_upstream_500_is_502(client):
    with pytest.raises(openai.InternalServerError) as ei:
        client.chat.completions.create(
            model="chat", messages=MESSAGES, extra_body={"mock": {"status": 500}}, extra_headers=rid("500")
        )
    assert ei.value.status_code == 502


def test_bad_upstream_credential_is_502_without_leaking_it(lane, client):
    with pytest.raises(openai.InternalServerError) as ei:
        client.chat.completions.create(model="badcred", messages=MESSAGES, extra_headers=rid("badcred"))
    err = ei.value
    assert err.status_code == 502
    seen = str(err) + " " + err.response.text + " " + json.dumps(dict(err.response.headers))
    assert WRONG_CREDENTIAL not in seen
    assert MOCK_CREDENTIAL not in seen
    # The upstream really did refuse it (so the 502 is about the credential, not something else).
    auths = [
        v
        for r in lane.mock_requests()
        for k, v in r["headers"]
        if k.lower() == "authorization"
    ]
    assert f"Bearer {WRONG_CREDENTIAL}" in auths


def test_first_byte_timeout_is_504(client):
    t0 = time.monotonic()
    with pytest.raises(openai.InternalServerError) as ei:
        client.chat.completions.create(
            model="chat",
            messages=MESSAGES,
            extra_body={"mock": {"stall": True}},
            extra_headers={"x-test-route": "slow", **rid("stall")},
        )
    elapsed = time.monotonic() - t0
    assert ei.value.status_code == 504
    assert elapsed < 2.0, f"504 took {elapsed:.2f}s (first_byte_timeout_ms is 300)"


def test_body_over_route_limit_is_413(client):
    big = [{"role": "user", "content": "x" * 3000}]
    with pytest.raises(openai.APIStatusError) as ei:
        client.chat.completions.create(
            model="chat", messages=big, extra_headers={"x-test-route": "small", **rid("413")}
        )
    assert ei.value.status_code == 413
    # A small body on the same route is fine.
    ok = client.chat.completions.create(
        model="chat", messages=MESSAGES, extra_headers={"x-test-route": "small"}
    )
    assert ok.choices[0].message.content == mock_text(8)


def test_missing_messages_is_400_missing_required_parameter(lane):
    req = urllib.request.Request(
        lane.base_url + "/chat/completions",
        data=json.dumps({"model": "chat"}).encode(),
        headers={
            "Authorization": f"Bearer {TESTER_KEY}",
            "Content-Type": "application/json",
            "x-request-id": "sdk-missing-messages",
        },
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as ei:
        urllib.request.urlopen(req, timeout=10)
    err = ei.value
    assert err.code == 400
    body = json.loads(err.read())
    assert body["error"]["code"] == "missing_required_parameter", body
    assert err.headers.get("x-request-id") == "sdk-missing-messages"


def test_missing_messages_via_sdk_is_bad_request(client):
    with pytest.raises(openai.BadRequestError) as ei:
        client.post("/chat/completions", body={"model": "chat"}, cast_to=object)
    assert ei.value.status_code == 400
    assert ei.value.code == "missing_required_parameter"


def test_malformed_upstream_json_is_502(client):
    with pytest.raises(openai.InternalServerError) as ei:
        client.chat.completions.create(
            model="chat", messages=MESSAGES, extra_body={"mock": {"malformed": True}}, extra_headers=rid("malformed")
        )
    assert ei.value.status_code == 502


# --- mid-stream faults -----------------------------------------------------------------------


def assert_stream_error_event(err: openai.APIError) -> None:
    """The SDK raised because it read an SSE `data: {"error": {...}}` event from the gateway,
    not because the connection broke (which the SDK reports as APIConnectionError)."""
    assert not isinstance(err, openai.APIConnectionError), (
        f"the stream broke at the connection level instead of carrying an error event: {err!r}"
    )
    assert isinstance(err.body, dict) and err.body.get("message"), f"error event has no message: {err.body!r}"


def test_stream_dropped_upstream_raises(client):
    stream = client.chat.completions.create(
        model="chat",
        messages=MESSAGES,
        stream=True,
        extra_body={"mock": {"drop_after_chunks": 3, "chunks": 8, "chunk_delay_ms": 20}},
        extra_headers=rid("drop"),
    )
    seen = {"n": 0}
    with pytest.raises(openai.APIError) as ei:
        for chunk in stream:
            for ch in chunk.choices:
                if ch.delta and ch.delta.content:
                    seen["n"] += 1
    assert_stream_error_event(ei.value)
    assert seen["n"] >= 1, "the error came before any content chunk"
    assert seen["n"] < 8, "the whole answer arrived despite the drop"


def test_stream_idle_timeout_raises(client):
    t0 = time.monotonic()
    stream = client.chat.completions.create(
        model="chat",
        messages=MESSAGES,
        stream=True,
        extra_body={"mock": {"stall_after_chunks": 2, "chunks": 8}},
        extra_headers={"x-test-route": "slow", **rid("idle")},
    )
    seen = {"n": 0}
    with pytest.raises(openai.APIError) as ei:
        for chunk in stream:
            for ch in chunk.choices:
                if ch.delta and ch.delta.content:
                    seen["n"] += 1
    assert_stream_error_event(ei.value)
    elapsed = time.monotonic() - t0
    assert seen["n"] >= 1
    assert seen["n"] < 8
    assert elapsed < 3.0, f"idle timeout took {elapsed:.2f}s (stream_idle_timeout_ms is 300)"


# --- request ids -----------------------------------------------------------------------------


def test_request_id_generated_and_echoed(client):
    raw = client.chat.completions.with_raw_response.create(model="chat", messages=MESSAGES)
    generated = raw.headers.get("x-request-id")
    assert generated, "no x-request-id on a success"
    assert raw.parse().choices[0].message.content == mock_text(8)

    raw2 = client.chat.completions.with_raw_response.create(
        model="chat", messages=MESSAGES, extra_headers={"x-request-id": "my-id-123"}
    )
    assert raw2.headers.get("x-request-id") == "my-id-123"

    raw3 = client.chat.completions.with_raw_response.create(model="chat", messages=MESSAGES)
    assert raw3.headers.get("x-request-id") not in (None, "", generated), "request ids repeat"


def test_request_id_on_errors_and_streams(lane, client):
    with pytest.raises(openai.NotFoundError) as ei:
        client.chat.completions.create(model="no-such-model", messages=MESSAGES)
    assert ei.value.response.headers.get("x-request-id")

    bad = lane.client("sk-sluice-wrong-0000")
    with pytest.raises(openai.AuthenticationError) as ei2:
        bad.models.list()
    assert ei2.value.response.headers.get("x-request-id")

    with client.chat.completions.with_streaming_response.create(
        model="chat", messages=MESSAGES, stream=True, extra_headers={"x-request-id": "my-stream-id"}
    ) as resp:
        assert resp.headers.get("x-request-id") == "my-stream-id"
        text = "".join(ch.delta.content or "" for c in resp.parse() for ch in c.choices)
    assert text == mock_text(8)

    models = client.models.with_raw_response.list()
    assert models.headers.get("x-request-id")


# --- access log (keep last: it reads what the tests above wrote) -----------------------------

LOG_FIELDS = (
    "request_id",
    "key_id",
    "tenant",
    "route",
    "model",
    "deployment",
    "status",
    "error_class",
    "stream",
    "latency_ms",
    "prompt_tokens",
    "completion_tokens",
)

# request ids (set by the tests above) whose log lines are checked below
EXPECTED_IDS = (
    "my-id-123",
    "sdk-chat",
    "sdk-stream-nousage",
    "sdk-stream-usage",
    "sdk-unknown-model",
    "sdk-500",
    "sdk-stall",
    "sdk-drop",
)


def _read_log(path) -> list[dict]:
    if not path.exists():
        return []
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    return [json.loads(ln) for ln in lines]


def test_access_log(lane):
    deadline = time.monotonic() + 5.0
    entries: list[dict] = []
    while time.monotonic() < deadline:
        entries = _read_log(lane.access_log)
        got = {e.get("request_id") for e in entries}
        if all(i in got for i in EXPECTED_IDS):
            break
        time.sleep(0.1)
    assert entries, f"access log {lane.access_log} is empty or missing"

    raw = lane.access_log.read_text()
    assert "sk-sluice-" not in raw, "a virtual key string is in the access log"
    assert MOCK_CREDENTIAL not in raw, "the upstream credential is in the access log"
    assert WRONG_CREDENTIAL not in raw, "the (wrong) upstream credential is in the access log"

    for e in entries:
        missing = [f for f in LOG_FIELDS if f not in e]
        assert not missing, f"access log line lacks {missing}: {e}"

    by_id = {e["request_id"]: e for e in entries}
    absent = [i for i in EXPECTED_IDS if i not in by_id]
    assert not absent, f"no access log line for {absent}; ids seen: {sorted(by_id)}"

    ok = by_id["my-id-123"]
    assert ok["key_id"] == "tester"
    assert ok["tenant"] == "t1"
    assert ok["route"] == "default"
    assert ok["model"] == "chat"
    assert ok["deployment"] == "mock-a"
    assert ok["status"] == 200
    assert ok["stream"] is False
    assert not ok["error_class"]
    assert ok["prompt_tokens"] > 0
    assert ok["completion_tokens"] == 8
    assert isinstance(ok["latency_ms"], (int, float)) and ok["latency_ms"] >= 0

    # Streams count usage even when the client did not ask for it (the gateway asks upstream).
    for i in ("sdk-stream-nousage", "sdk-stream-usage"):
        s = by_id[i]
        assert s["stream"] is True, s
        assert s["status"] == 200, s
        assert s["completion_tokens"] == 8, s
        assert s["prompt_tokens"] > 0, s

    nf = by_id["sdk-unknown-model"]
    assert nf["status"] == 404, nf
    assert nf["error_class"], nf

    up = by_id["sdk-500"]
    assert up["status"] == 502, up
    assert up["error_class"], up
    assert up["deployment"] == "mock-a", up

    stall = by_id["sdk-stall"]
    assert stall["status"] == 504, stall
    assert stall["route"] == "slow", stall
    assert stall["error_class"], stall

    drop = by_id["sdk-drop"]
    assert drop["stream"] is True, drop
    assert drop["error_class"], f"a dropped stream was logged as clean: {drop}"


# --- a response stage (the `debug_rewrite` test stage) on the SDK's own answers ------------------


def test_a_response_stage_rewrites_streamed_and_whole_answers_alike(client):
    headers = {"x-test-route": "rewrite"}
    expected = mock_text(40).replace("gateway", "GATEWAY")
    assert expected != mock_text(40)
    whole = client.chat.completions.create(
        model="chat", messages=MESSAGES, extra_headers=headers, extra_body={"mock": {"chunks": 40}}
    )
    assert whole.choices[0].message.content == expected
    assert whole.choices[0].finish_reason == "stop"
    assert whole.usage.completion_tokens == 40
    stream = client.chat.completions.create(
        model="chat",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers=headers,
        extra_body={"mock": {"chunks": 40}},
    )
    text, finish, usage = "", None, None
    for chunk in stream:
        for choice in chunk.choices:
            if choice.delta and choice.delta.content:
                text += choice.delta.content
            if choice.finish_reason:
                finish = choice.finish_reason
        if chunk.usage is not None:
            usage = chunk.usage
    assert text == expected
    assert finish == "stop"
    assert usage is not None and usage.completion_tokens == 40


def _replayable(stream):
    """What a client makes of a chat stream: text, tool calls, finish reason, usage counts."""
    text, calls, finish, usage = "", {}, None, None
    for chunk in stream:
        for choice in chunk.choices:
            if choice.delta and choice.delta.content:
                text += choice.delta.content
            if choice.finish_reason:
                finish = choice.finish_reason
            for tc in (choice.delta.tool_calls if choice.delta else None) or []:
                acc = calls.setdefault(tc.index, {"id": None, "name": "", "arguments": ""})
                acc["id"] = tc.id or acc["id"]
                if tc.function is not None:
                    acc["name"] += tc.function.name or ""
                    acc["arguments"] += tc.function.arguments or ""
        if chunk.usage is not None:
            usage = (chunk.usage.prompt_tokens, chunk.usage.completion_tokens, chunk.usage.total_tokens)
    for c in calls.values():
        c["arguments"] = json.loads(c["arguments"])
    return text, calls, finish, usage


@pytest.mark.parametrize("tools", [False, True], ids=["text", "tool-call"])
def test_a_cached_stream_replays_what_the_live_one_said(client, tools):
    nonce = secrets.token_hex(6)
    kw = dict(
        model="chat",
        messages=[{"role": "user", "content": f"Weather in Paris? ({nonce})"}],
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={"x-test-route": "cached"},
        extra_body={"mock": {"chunks": 12}},
    )
    if tools:
        kw["tools"] = [WEATHER_TOOL]
    live = client.chat.completions.with_raw_response.create(**kw)
    assert live.headers.get("x-sluice-cache") == "miss"
    live_answer = _replayable(live.parse())
    replay = client.chat.completions.with_raw_response.create(**kw)
    assert replay.headers.get("x-sluice-cache") == "hit"
    replayed = _replayable(replay.parse())
    assert replayed == live_answer
    assert live_answer[3] is not None
    if tools:
        assert live_answer[2] == "tool_calls" and live_answer[1][0]["name"] == "get_weather"
    else:
        assert live_answer[0] == mock_text(12)


def test_embeddings_are_cached_per_input_through_the_sdk(client):
    # The SDK asks for base64 and decodes it: a batch with one new input gets every vector
    # right, in its order, and the stored ones did not go upstream again.
    nonce = secrets.token_hex(6)
    a, b, c = (f"{w} {nonce}" for w in ("first", "second", "third"))
    kw = dict(model="chat", extra_headers={"x-test-route": "cached"}, extra_body={"mock": {"dimensions": 12}})
    first = client.embeddings.with_raw_response.create(input=[a, b], **kw)
    assert first.headers.get("x-sluice-cache") == "miss"
    mixed = client.embeddings.with_raw_response.create(input=[b, c, a], **kw)
    assert mixed.headers.get("x-sluice-cache") == "miss"
    vectors = {d.index: d.embedding for d in mixed.parse().data}
    stored = {d.index: d.embedding for d in first.parse().data}
    assert vectors[0] == pytest.approx(stored[1]) and vectors[2] == pytest.approx(stored[0])
    again = client.embeddings.with_raw_response.create(input=[c, a], **kw)
    assert again.headers.get("x-sluice-cache") == "hit"
    assert again.parse().data[0].embedding == pytest.approx(vectors[1])
    assert len(vectors[1]) == 12
