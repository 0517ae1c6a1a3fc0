"""Azure OpenAI. First the mock's Azure surface is checked with the official client for it
(`openai.AzureOpenAI`, which builds Azure's deployment URLs, api-version and api-key header
itself), so the mock cannot merely agree with Sluice's adapter; then the plain `openai` client
goes through Sluice to an Azure deployment on that mock.
"""

from __future__ import annotations

import json

import openai
import pytest

from conftest import MOCK_CREDENTIAL, TESTER_KEY

MOCK_WORDS = (
    "Sluice is a fast gateway for models; this answer comes from its mock provider, "
    "one token per chunk."
).split()


def mock_text(chunks: int = 8) -> str:
    return "".join(MOCK_WORDS[i % len(MOCK_WORDS)] + " " for i in range(chunks))


@pytest.fixture(scope="module")
def azure_direct(lane):
    c = openai.AzureOpenAI(
        azure_endpoint=lane.mock.base, api_key=MOCK_CREDENTIAL, api_version="2024-10-21", max_retries=0, timeout=15.0
    )
    yield c
    c.close()


def test_official_azure_client_against_the_mock(azure_direct, lane):
    r = azure_direct.chat.completions.create(model="my-deployment", messages=[{"role": "user", "content": "x"}])
    assert r.choices[0].message.content == mock_text(8)
    sent = lane.mock_requests()[-1]
    assert sent["path"] == "/openai/deployments/my-deployment/chat/completions?api-version=2024-10-21"
    assert dict(sent["headers"])["api-key"] == MOCK_CREDENTIAL
    chunks = list(azure_direct.chat.completions.create(
        model="my-deployment", messages=[{"role": "user", "content": "x"}], stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == mock_text(8)
    e = azure_direct.embeddings.create(model="my-embeddings", input=["a", "b"])
    assert len(e.data) == 2


def test_official_azure_client_with_a_wrong_key_is_refused(lane):
    c = openai.AzureOpenAI(azure_endpoint=lane.mock.base, api_key="nope", api_version="2024-10-21", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        c.chat.completions.create(model="d", messages=[{"role": "user", "content": "x"}])


def test_openai_client_through_sluice_to_azure(lane):
    c = lane.client(TESTER_KEY)
    r = c.chat.completions.create(model="azure-chat", messages=[{"role": "user", "content": "x"}])
    assert r.choices[0].message.content == mock_text(8)
    sent = lane.mock_requests()[-1]
    assert sent["path"] == "/openai/deployments/gpt4o-dep/chat/completions?api-version=2024-10-21"
    headers = dict(sent["headers"])
    assert headers["api-key"] == MOCK_CREDENTIAL and "authorization" not in headers
    assert json.loads(sent["body"])["model"] == "gpt4o-dep"
    stream = c.chat.completions.create(model="azure-chat", messages=[{"role": "user", "content": "x"}], stream=True,
                                       stream_options={"include_usage": True})
    chunks = list(stream)
    assert "".join(x.choices[0].delta.content or "" for x in chunks if x.choices) == mock_text(8)
    assert chunks[-1].usage.completion_tokens == 8
