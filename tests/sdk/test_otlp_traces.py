"""Traces over OTLP/HTTP: a real receiver decodes what a real gateway sends.

The receiver is a plain HTTP server that parses each POST with the official OpenTelemetry
protobuf classes (`opentelemetry-proto`), so a field Sluice wrote wrong fails to decode or
shows up wrong here. Requests go through the official `openai` SDK: a streamed one that
continues the caller's trace, a failed-over one (a dead deployment, then the fallback alias),
and one whose caller did not sample its trace.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import openai
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from conftest import (
    MOCK_CREDENTIAL,
    TESTER_KEY,
    UPSTREAM_MODEL,
    free_port,
    http_get,
    key_hash,
    sluice_bin,
    start,
)

OTLP_TOKEN = "otlp-token-" + secrets.token_hex(6)
# A word in every prompt: it must never appear in a span.
PROMPT_MARK = "zebracorn-" + secrets.token_hex(4)
WAIT_S = 20.0

CONFIG = """\
server: {{ listen: "127.0.0.1:{gw_port}" }}
admin: {{ listen: "127.0.0.1:{admin_port}" }}
store: {{ sqlite_path: "{db}" }}
logging: {{ access_log: off }}
telemetry:
  otlp: {{ endpoint: "http://127.0.0.1:{otlp_port}", headers_env: OTLP_LANE_HEADERS, sample_ratio: 1.0 }}
deployments:
  - {{ name: mock-a, provider: openai, base_url: "{mock_base}/v1", model: {upstream}, api_key_env: OTLP_LANE_MOCK_KEY }}
  - {{ name: dead, provider: openai, base_url: "http://127.0.0.1:{dead_port}/v1", model: never-reached, api_key_env: OTLP_LANE_MOCK_KEY }}
models:
  - {{ name: chat, deployments: [mock-a] }}
  - {{ name: deadmodel, deployments: [dead] }}
routes:
  - name: failover
    match: {{ headers: {{ x-test-route: failover }} }}
    model: deadmodel
    max_attempts: 1
    fallback: [chat]
    forward_params: [mock]
  - name: default
    forward_params: [mock]
keys:
  - {{ id: tester, hash: "{tester_hash}", tenant: t1 }}
"""


class Receiver:
    """Collects the spans of every export request it decodes."""

    def __init__(self) -> None:
        self.spans: list[trace_pb2.Span] = []
        self.resources: list[dict] = []
        self.headers: list[dict] = []
        self.errors: list[str] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                try:
                    if self.path != "/v1/traces":
                        raise ValueError(f"posted to {self.path}")
                    if self.headers.get("content-type") != "application/x-protobuf":
                        raise ValueError(f"content-type {self.headers.get('content-type')}")
                    req = trace_service_pb2.ExportTraceServiceRequest()
                    req.ParseFromString(body)
                except Exception as e:  # a malformed export is a test failure, reported below
                    with receiver.lock:
                        receiver.errors.append(repr(e))
                    self.send_response(400)
                    self.end_headers()
                    return
                with receiver.lock:
                    receiver.headers.append(dict(self.headers))
                    for rs in req.resource_spans:
                        receiver.resources.append(
                            {kv.key: kv.value.string_value for kv in rs.resource.attributes}
                        )
                        for ss in rs.scope_spans:
                            receiver.spans.extend(ss.spans)
                out = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def trace(self, trace_id: bytes, at_least: int) -> list[trace_pb2.Span]:
        """The spans of one trace, once `at_least` of them arrived (bounded wait)."""
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            with self.lock:
                assert not self.errors, self.errors
                found = [s for s in self.spans if s.trace_id == trace_id]
            if len(found) >= at_least:
                return found
            time.sleep(0.05)
        raise AssertionError(f"only {len(found)} spans of trace {trace_id.hex()} after {WAIT_S}s")

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def attrs(span: trace_pb2.Span) -> dict:
    out = {}
    for kv in span.attributes:
        v = kv.value
        kind = v.WhichOneof("value")
        out[kv.key] = (
            [x.string_value for x in v.array_value.values] if kind == "array_value" else getattr(v, kind)
        )
    return out


@pytest.fixture(scope="module")
def traced(tmp_path_factory):
    binary = sluice_bin()
    tmp = tmp_path_factory.mktemp("otlp-lane")
    receiver = Receiver()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SDK_LANE_", "OTLP_LANE_"))}
    env.setdefault("RUST_LOG", "info")
    env["OTLP_LANE_MOCK_KEY"] = MOCK_CREDENTIAL
    env["OTLP_LANE_HEADERS"] = f"x-otlp-token={OTLP_TOKEN}"
    mock_port = free_port()
    mock = start(
        "mock",
        [binary, "mock", "--listen", f"127.0.0.1:{mock_port}", "--api-key-env", "OTLP_LANE_MOCK_KEY"],
        tmp,
        mock_port,
        env,
        "/mock/stats",
    )
    gw_port, admin_port = free_port(), free_port()
    config = tmp / "sluice.yaml"
    config.write_text(
        CONFIG.format(
            gw_port=gw_port,
            admin_port=admin_port,
            otlp_port=receiver.port,
            dead_port=free_port(),  # nothing listens there: connection refused
            db=tmp / "keys.db",
            mock_base=mock.base,
            upstream=UPSTREAM_MODEL,
            tester_hash=key_hash(TESTER_KEY),
        )
    )
    try:
        gateway = start("gateway", [binary, "serve", "--config", str(config)], tmp, gw_port, env, "/healthz")
    except BaseException:
        mock.stop()
        receiver.stop()
        raise
    client = openai.OpenAI(base_url=gateway.base + "/v1", api_key=TESTER_KEY, max_retries=0, timeout=15.0)
    try:
        yield receiver, client, mock, gateway, admin_port
    finally:
        client.close()
        gateway.stop()
        mock.stop()
        receiver.stop()


def caller_context(sampled: bool = True) -> tuple[str, bytes, bytes]:
    trace_id, parent = secrets.token_bytes(16), secrets.token_bytes(8)
    header = f"00-{trace_id.hex()}-{parent.hex()}-{'01' if sampled else '00'}"
    return header, trace_id, parent


def test_a_streamed_request_continues_the_callers_trace(traced):
    receiver, client, mock, _, _ = traced
    header, trace_id, parent = caller_context()
    stream = client.chat.completions.create(
        model="chat",
        messages=[{"role": "user", "content": f"tell me about {PROMPT_MARK}"}],
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={"traceparent": header, "tracestate": "lane=1"},
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text

    spans = receiver.trace(trace_id, at_least=4)
    roots = [s for s in spans if s.kind == trace_pb2.Span.SPAN_KIND_SERVER]
    assert len(roots) == 1, spans
    root = roots[0]
    assert root.parent_span_id == parent, "the caller's span is the request span's parent"
    assert root.name == "chat chat"
    assert root.trace_state == "lane=1"
    a = attrs(root)
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.request.model"] == "chat"
    assert a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.response.model"] == UPSTREAM_MODEL
    assert a["gen_ai.usage.input_tokens"] > 0 and a["gen_ai.usage.output_tokens"] > 0
    assert a["http.response.status_code"] == 200
    assert a["gen_ai.response.finish_reasons"] == ["stop"]
    assert a["sluice.stream"] is True and a["sluice.route"] == "default" and a["sluice.tenant"] == "t1"
    assert root.status.code != trace_pb2.Status.STATUS_CODE_ERROR
    assert root.end_time_unix_nano > root.start_time_unix_nano

    children = [s for s in spans if s is not root]
    assert all(s.parent_span_id == root.span_id for s in children), "every other span is a child"
    for s in children:
        assert root.start_time_unix_nano <= s.start_time_unix_nano <= s.end_time_unix_nano
        assert s.end_time_unix_nano <= root.end_time_unix_nano
    names = {s.name for s in children}
    assert {"sluice.auth", "sluice.read", "sluice.route", "sluice.upstream", "sluice.respond"} <= names, names
    clients = [s for s in children if s.kind == trace_pb2.Span.SPAN_KIND_CLIENT]
    assert len(clients) == 1
    attempt = clients[0]
    assert attempt.name == f"chat {UPSTREAM_MODEL}"
    ca = attrs(attempt)
    assert ca["gen_ai.request.model"] == UPSTREAM_MODEL and ca["sluice.deployment"] == "mock-a"
    assert ca["gen_ai.provider.name"] == "openai" and "error.type" not in ca

    # The upstream (a loopback server: trace context forwarded) got the attempt's span as parent.
    sent = [
        dict((k.lower(), v) for k, v in r["headers"])
        for r in json.loads(http_get(mock.base + "/mock/requests")[1])
        if PROMPT_MARK in r["body"]
    ]
    assert sent and sent[-1]["traceparent"] == f"00-{trace_id.hex()}-{attempt.span_id.hex()}-01"
    assert sent[-1]["tracestate"] == "lane=1"

    # The exporter's own resource and headers.
    with receiver.lock:
        assert receiver.resources and receiver.resources[0]["service.name"] == "sluice"
        assert all(h.get("x-otlp-token") == OTLP_TOKEN for h in receiver.headers)


def test_a_failed_over_request_has_a_span_per_attempt(traced):
    receiver, client, _, _, _ = traced
    header, trace_id, _ = caller_context()
    r = client.chat.completions.create(
        model="chat",
        messages=[{"role": "user", "content": f"fail over, {PROMPT_MARK}"}],
        extra_headers={"traceparent": header, "x-test-route": "failover"},
    )
    assert r.choices[0].message.content

    spans = receiver.trace(trace_id, at_least=5)
    root = next(s for s in spans if s.kind == trace_pb2.Span.SPAN_KIND_SERVER)
    a = attrs(root)
    assert a["sluice.fallback"] == "error" and a["sluice.route"] == "failover"
    assert a["gen_ai.response.model"] == UPSTREAM_MODEL and a["sluice.attempts"] == 2
    assert a["gen_ai.response.finish_reasons"] == [r.choices[0].finish_reason]
    attempts = sorted(
        (s for s in spans if s.kind == trace_pb2.Span.SPAN_KIND_CLIENT), key=lambda s: s.start_time_unix_nano
    )
    assert [attrs(s)["sluice.deployment"] for s in attempts] == ["dead", "mock-a"]
    failed, answered = attempts
    assert failed.status.code == trace_pb2.Status.STATUS_CODE_ERROR
    assert attrs(failed)["error.type"] and failed.name == "chat never-reached"
    assert answered.status.code != trace_pb2.Status.STATUS_CODE_ERROR
    assert failed.end_time_unix_nano <= answered.start_time_unix_nano
    assert all(s.parent_span_id == root.span_id for s in attempts)


def test_an_unsampled_trace_is_not_exported_and_no_span_holds_prompt_text(traced):
    receiver, client, _, _, admin_port = traced
    unsampled, unsampled_id, _ = caller_context(sampled=False)
    client.chat.completions.create(
        model="chat",
        messages=[{"role": "user", "content": f"not sampled {PROMPT_MARK}"}],
        extra_headers={"traceparent": unsampled},
    )
    # A sampled request after it: one exporter, in order — once its spans are in, the first's
    # would have been too.
    sampled, sampled_id, _ = caller_context()
    client.chat.completions.create(
        model="chat",
        messages=[{"role": "user", "content": "after it"}],
        extra_headers={"traceparent": sampled},
    )
    receiver.trace(sampled_id, at_least=4)
    with receiver.lock:
        assert not [s for s in receiver.spans if s.trace_id == unsampled_id]
        everything = b"".join(s.SerializeToString() for s in receiver.spans)
    assert PROMPT_MARK.encode() not in everything

    status, body = http_get(f"http://127.0.0.1:{admin_port}/metrics")
    assert status == 200
    exported = [
        float(line.split()[-1])
        for line in body.decode().splitlines()
        if line.startswith("sluice_otlp_spans_exported_total")
    ]
    assert exported and exported[0] >= 9, exported
