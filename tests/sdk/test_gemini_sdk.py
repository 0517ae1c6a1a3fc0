"""Google Gemini. The mock's Gemini surface is first checked with Google's own client
(`google-genai`, base URL pointed at the mock), then the `openai` and `anthropic` SDKs reach a
Gemini deployment through Sluice (translated both ways, streaming included).
"""

from __future__ import annotations

import json

import anthropic
import openai
import pytest
from google import genai
from google.genai import types

from conftest import MOCK_CREDENTIAL, TESTER_KEY

MOCK_WORDS = (
    "Sluice is a fast gateway for models; this answer comes from its mock provider, "
    "one token per chunk."
).split()


def mock_text(chunks: int = 8) -> str:
    return "".join(MOCK_WORDS[i % len(MOCK_WORDS)] + " " for i in range(chunks))


WEATHER_DECL = {
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture(scope="module")
def google(lane):
    return genai.Client(api_key=MOCK_CREDENTIAL, http_options=types.HttpOptions(base_url=lane.mock.base, timeout=15000))


@pytest.fixture(scope="module")
def oa(lane):
    c = lane.client(TESTER_KEY)
    yield c
    c.close()


# --- Google's client against the mock ----------------------------------------------------------


def test_google_client_generate_and_stream(google, lane):
    r = google.models.generate_content(
        model="gemini-mock", contents="Say something.",
        config=types.GenerateContentConfig(system_instruction="Be brief.", max_output_tokens=64),
    )
    assert r.text == mock_text(8)
    assert r.usage_metadata.candidates_token_count == 8
    sent = lane.mock_requests()[-1]
    assert sent["path"].endswith("/models/gemini-mock:generateContent")
    assert dict(sent["headers"])["x-goog-api-key"] == MOCK_CREDENTIAL
    pieces = [c.text for c in google.models.generate_content_stream(model="gemini-mock", contents="Stream.")]
    assert "".join(pieces) == mock_text(8)
    assert lane.mock_requests()[-1]["path"].endswith("/models/gemini-mock:streamGenerateContent?alt=sse")


def test_google_client_function_call_and_embeddings(google):
    r = google.models.generate_content(
        model="gemini-mock", contents="Weather in mock?",
        config=types.GenerateContentConfig(
            tools=[types.Tool(function_declarations=[types.FunctionDeclaration(**WEATHER_DECL)])],
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
        ),
    )
    assert r.function_calls[0].name == "get_weather"
    assert r.function_calls[0].args == {"city": "mock"}
    e = google.models.embed_content(model="text-embedding-mock", contents=["a", "b"])
    assert len(e.embeddings) == 2 and len(e.embeddings[0].values) == 8


def test_google_client_with_a_wrong_key_is_refused(lane):
    bad = genai.Client(api_key="nope", http_options=types.HttpOptions(base_url=lane.mock.base))
    with pytest.raises(genai.errors.ClientError) as e:
        bad.models.generate_content(model="gemini-mock", contents="x")
    assert e.value.code == 400


# --- through Sluice -----------------------------------------------------------------------------


def test_openai_chat_to_gemini(oa, lane):
    r = oa.chat.completions.create(
        model="gemini", max_tokens=32, stop=["END"],
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}],
    )
    assert r.choices[0].message.content == mock_text(8)
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.completion_tokens == 8 and r.usage.prompt_tokens > 0
    sent = lane.mock_requests()[-1]
    assert sent["path"] == "/v1beta/models/gemini-upstream:generateContent"
    body = json.loads(sent["body"])
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert body["generationConfig"] == {"maxOutputTokens": 32, "stopSequences": ["END"]}
    assert dict(sent["headers"])["x-goog-api-key"] == MOCK_CREDENTIAL


def test_openai_stream_to_gemini(oa):
    chunks = list(oa.chat.completions.create(
        model="gemini", messages=[{"role": "user", "content": "x"}], stream=True,
        stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == mock_text(8)
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].usage.completion_tokens == 8


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
def test_openai_tools_to_gemini(oa, lane, streamed):
    tool = {"type": "function", "function": WEATHER_DECL}
    kw = dict(model="gemini", messages=[{"role": "user", "content": "Weather?"}], tools=[tool])
    if streamed:
        chunks = list(oa.chat.completions.create(**kw, stream=True))
        calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
        name = next(tc.function.name for tc in calls if tc.function and tc.function.name)
        args = "".join(tc.function.arguments or "" for tc in calls if tc.function)
        call_id = next(tc.id for tc in calls if tc.id)
        finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        assert finish == ["tool_calls"]
    else:
        r = oa.chat.completions.create(**kw)
        assert r.choices[0].finish_reason == "tool_calls"
        tc = r.choices[0].message.tool_calls[0]
        name, args, call_id = tc.function.name, tc.function.arguments, tc.id
    assert name == "get_weather" and json.loads(args) == {"city": "mock"}
    follow = oa.chat.completions.create(
        model="gemini", tools=[tool],
        messages=[
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": None,
             "tool_calls": [{"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}]},
            {"role": "tool", "tool_call_id": call_id, "content": "Sunny"},
        ],
    )
    assert follow.choices[0].message.content == mock_text(8)
    body = json.loads(lane.mock_requests()[-1]["body"])
    # The tool result is tied to the function by name, as Gemini wants.
    assert body["contents"][-1]["parts"][0]["functionResponse"] == {"name": "get_weather", "response": {"content": "Sunny"}}


def test_openai_embeddings_to_gemini(oa):
    e = oa.embeddings.create(model="gemini", input=["a", "b", "c"])  # the SDK asks for base64
    assert len(e.data) == 3 and len(e.data[0].embedding) == 8
    f = oa.embeddings.create(model="gemini", input="a", encoding_format="float")
    assert f.data[0].embedding == pytest.approx(e.data[0].embedding)


def test_safety_block_is_a_content_policy_error(oa):
    with pytest.raises(openai.BadRequestError) as e:
        oa.chat.completions.create(model="gemini", messages=[{"role": "user", "content": "x"}],
                                   extra_body={"mock": {"safety_block": "prompt"}})
    assert e.value.code == "content_policy_violation"
    # Blocked mid-answer in a stream: the answer stops with finish_reason content_filter.
    chunks = list(oa.chat.completions.create(
        model="gemini", messages=[{"role": "user", "content": "x"}], stream=True,
        extra_body={"mock": {"safety_block": "answer"}}))
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["content_filter"]


def test_anthropic_client_to_gemini(lane):
    c = anthropic.Anthropic(base_url=lane.gateway.base, api_key=TESTER_KEY, max_retries=0)
    with c.messages.stream(model="gemini", max_tokens=32, messages=[{"role": "user", "content": "x"}]) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == mock_text(8)
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 8
