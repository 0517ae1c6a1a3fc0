"""Fixtures for the Python SDK lane: one real `sluice mock` and one real `sluice serve` per module.

Everything talks over loopback (127.0.0.1) only. The binary comes from $SLUICE_BIN
(scripts/sdk-lane.sh sets it to target/debug/sluice by default).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import anthropic
import openai
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

# The mock's upstream credential. It must never show up in a gateway response or log line.
MOCK_CREDENTIAL = "mock-upstream-secret-" + secrets.token_hex(8)
# What the misconfigured deployment sends instead (the mock answers 401 to it).
WRONG_CREDENTIAL = "wrong-upstream-secret-" + secrets.token_hex(8)

TESTER_KEY = "sk-sluice-tester-" + secrets.token_hex(12)

# AWS credentials the mock verifies SigV4 signatures against (boto3 and the gateway sign with them).
AWS_KEY_ID = "AKIDSDKLANE" + secrets.token_hex(4).upper()
AWS_SECRET = "sdk-lane-secret-" + secrets.token_hex(16)
AWS_ENV = {"AWS_ACCESS_KEY_ID": AWS_KEY_ID, "AWS_SECRET_ACCESS_KEY": AWS_SECRET}
LIMITED_KEY = "sk-sluice-limited-" + secrets.token_hex(12)

UPSTREAM_MODEL = "upstream-a"
CLAUDE_UPSTREAM_MODEL = "claude-upstream"

STOP_GRACE_S = 10.0
READY_TIMEOUT_S = 20.0


def sluice_bin() -> str:
    b = os.environ.get("SLUICE_BIN") or str(REPO_ROOT / "target" / "debug" / "sluice")
    b = os.path.abspath(b)
    if not os.access(b, os.X_OK):
        pytest.exit(f"sluice binary not found or not executable: {b} (set SLUICE_BIN)", returncode=2)
    return b


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def key_hash(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    stdout_path: Path
    stderr_path: Path
    port: int
    extra: dict = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self, limit: int = 20000) -> str:
        parts = []
        for label, p in (("stdout", self.stdout_path), ("stderr", self.stderr_path)):
            try:
                text = p.read_text(errors="replace")
            except OSError:
                text = "<unreadable>"
            if len(text) > limit:
                text = "...\n" + text[-limit:]
            parts.append(f"--- {self.name} {label} ({p}) ---\n{text}")
        return "\n".join(parts)

    def stop(self) -> None:
        p = self.popen
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                p.kill()  # SIGKILL, this PID only
                p.wait(timeout=5)


def http_get(url: str, timeout: float = 2.0, headers: dict | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_ready(proc: Proc, path: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    last = None
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(
                f"{proc.name} exited with {proc.popen.returncode} before it was ready\n{proc.output()}"
            )
        try:
            status, _ = http_get(proc.base + path, timeout=1.0)
            if status == 200:
                return
            last = f"HTTP {status}"
        except OSError as e:
            last = repr(e)
        time.sleep(0.05)
    proc.stop()
    raise RuntimeError(f"{proc.name} not ready after {READY_TIMEOUT_S}s (last: {last})\n{proc.output()}")


def start(name: str, args: list[str], tmp: Path, port: int, env: dict, ready_path: str) -> Proc:
    out = tmp / f"{name}.stdout"
    err = tmp / f"{name}.stderr"
    with open(out, "wb") as fo, open(err, "wb") as fe:
        popen = subprocess.Popen(
            args, stdout=fo, stderr=fe, stdin=subprocess.DEVNULL, env=env, cwd=str(tmp)
        )
    proc = Proc(name=name, popen=popen, stdout_path=out, stderr_path=err, port=port)
    wait_ready(proc, ready_path)
    return proc


GATEWAY_CONFIG = """\
server: {{ listen: "127.0.0.1:{gw_port}" }}
admin: {{ listen: "127.0.0.1:{admin_port}" }}
store: {{ sqlite_path: "{db}" }}
logging: {{ access_log: "{access_log}" }}
deployments:
  - {{ name: mock-a, provider: openai, base_url: "{mock_base}/v1", model: {upstream}, api_key_env: SDK_LANE_MOCK_KEY }}
  - {{ name: broken-cred, provider: openai, base_url: "{mock_base}/v1", model: {upstream}, api_key_env: SDK_LANE_WRONG_KEY }}
  - {{ name: azure-a, provider: azure, base_url: "{mock_base}", model: gpt4o-dep, api_version: "2024-10-21", api_key_env: SDK_LANE_MOCK_KEY }}
  - {{ name: gemini-a, provider: gemini, base_url: "{mock_base}/v1beta", model: gemini-upstream, api_key_env: SDK_LANE_MOCK_KEY }}
  - {{ name: bedrock-a, provider: bedrock, region: us-east-1, base_url: "{mock_base}", model: "anthropic.claude-3-haiku-20240307-v1:0" }}
  - {{ name: claude-a, provider: anthropic, base_url: "{mock_base}/v1", model: {claude_upstream}, api_key_env: SDK_LANE_MOCK_KEY }}
models:
  - {{ name: chat, deployments: [mock-a] }}
  - {{ name: claude, deployments: [claude-a] }}
  - {{ name: azure-chat, deployments: [azure-a] }}
  - {{ name: gemini, deployments: [gemini-a] }}
  - {{ name: bedrock, deployments: [bedrock-a] }}
  - {{ name: other, deployments: [mock-a] }}
  - {{ name: badcred, deployments: [broken-cred] }}
routes:
  - name: slow
    match: {{ headers: {{ x-test-route: slow }} }}
    first_byte_timeout_ms: 300
    stream_idle_timeout_ms: 300
  - name: small-body
    match: {{ headers: {{ x-test-route: small }} }}
    max_body_bytes: 2000
  - name: lenient
    match: {{ headers: {{ x-test-route: lenient }} }}
    unsupported_params: drop
    forward_params: [mock]
  - name: rewrite
    match: {{ headers: {{ x-test-route: rewrite }} }}
    forward_params: [mock]
    debug_rewrite: {{ hold_chars: 20, replace: {{ from: gateway, to: GATEWAY }} }}
  - name: cached
    match: {{ headers: {{ x-test-route: cached }} }}
    forward_params: [mock]
    cache: {{ ttl_ms: 600000 }}
  - name: guarded
    match: {{ headers: {{ x-test-route: guarded }} }}
    forward_params: [mock]
    guardrails: [pii-redact, injection-screen, lane-output]
  - name: default
    forward_params: [mock]
guardrail_sets:
  lane-output:
    - {{ name: codename, on: output, deny: {{ literals: ["Project Falcon"] }} }}
keys:
  - {{ id: tester, hash: "{tester_hash}", tenant: t1, team: a }}
  - {{ id: limited, hash: "{limited_hash}", models: [other] }}
"""


@dataclass
class Lane:
    mock: Proc
    gateway: Proc
    access_log: Path
    config_path: Path

    @property
    def base_url(self) -> str:
        return self.gateway.base + "/v1"

    def client(self, key: str = TESTER_KEY, **kw) -> openai.OpenAI:
        kw.setdefault("timeout", 15.0)
        return openai.OpenAI(base_url=self.base_url, api_key=key, max_retries=0, **kw)

    def mock_stats(self) -> dict:
        status, body = http_get(self.mock.base + "/mock/stats")
        assert status == 200, body
        return json.loads(body)

    def mock_requests(self) -> list[dict]:
        status, body = http_get(self.mock.base + "/mock/requests")
        assert status == 200, body
        return json.loads(body)

    def diagnostics(self, limit: int = 3000) -> str:
        return self.gateway.output(limit) + "\n" + self.mock.output(limit)


@pytest.fixture(scope="module")
def lane(tmp_path_factory, request):
    binary = sluice_bin()
    tmp = tmp_path_factory.mktemp("sdk-lane")

    base_env = {k: v for k, v in os.environ.items() if not k.startswith("SDK_LANE_")}
    base_env.setdefault("RUST_LOG", "info")
    base_env.setdefault("NO_COLOR", "1")  # plain text in the captured logs

    mock_port = free_port()
    mock_env = dict(base_env, SDK_LANE_MOCK_KEY=MOCK_CREDENTIAL, **AWS_ENV)
    mock = start(
        "mock",
        [binary, "mock", "--listen", f"127.0.0.1:{mock_port}", "--api-key-env", "SDK_LANE_MOCK_KEY", "--verify-sigv4"],
        tmp,
        mock_port,
        mock_env,
        "/mock/stats",
    )

    gw_port, admin_port = free_port(), free_port()
    while admin_port == gw_port:
        admin_port = free_port()
    access_log = tmp / "access.log"
    config = GATEWAY_CONFIG.format(
        gw_port=gw_port,
        admin_port=admin_port,
        db=tmp / "keys.db",
        access_log=access_log,
        mock_base=mock.base,
        upstream=UPSTREAM_MODEL,
        claude_upstream=CLAUDE_UPSTREAM_MODEL,
        tester_hash=key_hash(TESTER_KEY),
        limited_hash=key_hash(LIMITED_KEY),
    )
    config_path = tmp / "sluice.yaml"
    config_path.write_text(config)
    gw_env = dict(base_env, SDK_LANE_MOCK_KEY=MOCK_CREDENTIAL, SDK_LANE_WRONG_KEY=WRONG_CREDENTIAL, **AWS_ENV)
    try:
        gateway = start(
            "gateway", [binary, "serve", "--config", str(config_path)], tmp, gw_port, gw_env, "/healthz"
        )
    except BaseException:
        mock.stop()
        raise

    lane = Lane(mock=mock, gateway=gateway, access_log=access_log, config_path=config_path)
    request.node.sdk_lane = lane
    try:
        yield lane
    finally:
        gateway.stop()
        mock.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """On a failing test, attach the tail of the gateway's and the mock's output to the report."""
    report = yield
    if report.when in ("setup", "call") and report.failed:
        module = item.getparent(pytest.Module)
        lane = getattr(module, "sdk_lane", None) if module is not None else None
        if lane is not None:
            report.sections.append(("sluice processes (tail)", lane.diagnostics()))
    return report


# The SDK clients every lane module uses (the tester's key, no retries).
@pytest.fixture(scope="module")
def client(lane):
    c = lane.client(TESTER_KEY)
    yield c
    c.close()


@pytest.fixture(scope="module")
def claude(lane):
    c = anthropic.Anthropic(base_url=lane.gateway.base, api_key=TESTER_KEY, max_retries=0, timeout=15.0)
    yield c
    c.close()
