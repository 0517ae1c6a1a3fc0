"""The web console, end to end: a real gateway, traffic through the official `openai` SDK, and
Debian's Chromium driven by Selenium (never a downloaded browser).

What is checked over the wire: the sign-in (an HttpOnly, SameSite=Strict cookie that expires;
sign-out; attempts limited per client address), CSRF on every write, the strict
Content-Security-Policy (no script at all, and the pages raise no violation in the browser),
charts whose data tables match the traffic the test sent, usage drill-down and CSV, a key created
in the console (shown once) that works through the API, limits edited in the console that the
gateway then enforces, the key revoked and refused with 401, a viewer who sees no write
buttons and whose writes are refused, a tenant principal who sees only its tenant. A screenshot of
every page goes to target/console-screenshots/ (scripts/console-screenshots.sh copies them to
docs/console/).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import sqlite3
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest
import requests
from requests.adapters import HTTPAdapter

from conftest import MOCK_CREDENTIAL, UPSTREAM_MODEL, free_port, key_hash, sluice_bin, start

os.environ.setdefault("SE_OFFLINE", "true")  # Selenium must never fetch a driver or a browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

ADMIN_TOKEN = "admin-" + secrets.token_hex(12)
TRAFFIC_KEY = "sk-console-traffic-" + secrets.token_hex(8)
OTHER_KEY = "sk-console-other-" + secrets.token_hex(8)
ANSWERED = 7
FAILED = 2  # answered 500 by the mock upstream
REQUESTS_SENT = ANSWERED + FAILED
SHOTS = Path(__file__).resolve().parents[2] / "target" / "console-screenshots"

CONFIG = """\
server: {{ listen: "127.0.0.1:{gw_port}" }}
admin:
  listen: "127.0.0.1:{admin_port}"
  token_env: CONSOLE_LANE_TOKEN
  console: {{ session_minutes: 5, sign_in_attempts: 3 }}
store: {{ sqlite_path: "{db}" }}
logging: {{ access_log: off }}
deployments:
  - {{ name: mock-a, provider: openai, base_url: "{mock_base}/v1", model: {upstream}, api_key_env: CONSOLE_LANE_MOCK_KEY }}
models:
  - {{ name: chat, deployments: [mock-a] }}
routes:
  - name: default
    forward_params: [mock]
keys:
  - {{ id: traffic, hash: "{traffic_hash}", tenant: t1, team: console-team }}
  - {{ id: other, hash: "{other_hash}", tenant: t2 }}
"""

pytestmark = pytest.mark.skipif(
    not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
    reason="Debian's chromium and chromium-driver are needed (scripts/test.sh installs them)",
)


@dataclass
class Console:
    base: str  # the admin listener
    api: str  # the gateway's /v1
    db: Path
    gateway: object

    def admin(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        req = urllib.request.Request(
            self.base + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "content-type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def principal(self, role: str, tenant: str | None = None) -> tuple[str, str]:
        body = {"role": role} | ({"tenant": tenant} if tenant else {})
        status, created = self.admin("POST", "/admin/principals", body)
        assert status == 201, created
        return created["id"], created["token"]

    def client(self, key: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.api, api_key=key, max_retries=0, timeout=15.0)


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    binary = sluice_bin()
    tmp = tmp_path_factory.mktemp("console")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SDK_LANE_", "CONSOLE_LANE_"))}
    env["CONSOLE_LANE_MOCK_KEY"] = MOCK_CREDENTIAL
    env["CONSOLE_LANE_TOKEN"] = ADMIN_TOKEN
    env.setdefault("NO_COLOR", "1")
    mock_port = free_port()
    mock = start(
        "mock",
        [binary, "mock", "--listen", f"127.0.0.1:{mock_port}", "--api-key-env", "CONSOLE_LANE_MOCK_KEY"],
        tmp,
        mock_port,
        env,
        "/mock/stats",
    )
    gw_port, admin_port = free_port(), free_port()
    while admin_port == gw_port:
        admin_port = free_port()
    db = tmp / "keys.db"
    config = tmp / "sluice.yaml"
    config.write_text(
        CONFIG.format(
            gw_port=gw_port,
            admin_port=admin_port,
            db=db,
            mock_base=mock.base,
            upstream=UPSTREAM_MODEL,
            traffic_hash=key_hash(TRAFFIC_KEY),
            other_hash=key_hash(OTHER_KEY),
        )
    )
    try:
        gateway = start("gateway", [binary, "serve", "--config", str(config)], tmp, gw_port, env, "/healthz")
    except BaseException:
        mock.stop()
        raise
    try:
        yield Console(base=f"http://127.0.0.1:{admin_port}", api=f"{gateway.base}/v1", db=db, gateway=gateway)
    finally:
        gateway.stop()
        mock.stop()


class FromAddress(HTTPAdapter):
    """Connections from one source address (any of 127.0.0.0/8 is this machine)."""

    def __init__(self, ip: str):
        self.ip = ip
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.ip, 0)
        return super().init_poolmanager(*args, **kwargs)


class Client(requests.Session):
    """A browser-less client: no redirects followed, a timeout on every call."""

    def request(self, method, url, **kw):
        kw["allow_redirects"] = False  # get() defaults it to True before this
        kw.setdefault("timeout", 10.0)
        return super().request(method, url, **kw)


def from_address(ip: str) -> Client:
    c = Client()
    c.mount("http://", FromAddress(ip))
    return c


def sign_in(c: Client, base: str, token: str) -> requests.Response:
    return c.post(base + "/console/sign-in", data={"token": token})


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([0-9a-f]{64})"', html)
    assert m, "every signed-in page carries the session's CSRF token in its forms"
    return m.group(1)


# --- the protocol: headers, cookie, sign-in limits, CSRF, sign-out, ends of sessions ---------------


def test_pages_need_a_session_and_forbid_every_script(console: Console):
    with from_address("127.0.0.1") as c:
        r = c.get(console.base + "/console")
        assert r.status_code == 303 and r.headers["location"] == "/console/sign-in"
        page = c.get(console.base + "/console/sign-in")
        assert page.status_code == 200
        csp = page.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src" not in csp and "unsafe" not in csp, csp
        assert "frame-ancestors 'none'" in csp and "form-action 'self'" in csp
        assert page.headers["x-frame-options"] == "DENY"
        assert page.headers["x-content-type-options"] == "nosniff"
        assert "<script" not in page.text
        # The admin API itself still wants its bearer token; the console's cookie is not one.
        assert c.get(console.base + "/admin/keys").status_code == 401


def test_sign_in_sets_a_strict_cookie_and_sign_out_ends_the_session(console: Console):
    with from_address("127.0.0.4") as c:
        r = sign_in(c, console.base, ADMIN_TOKEN)
        assert r.status_code == 303 and r.headers["location"] == "/console"
        cookie = r.headers["set-cookie"]
        assert re.match(r"sluice_session=[0-9a-f]{64};", cookie), cookie
        for attr in ("HttpOnly", "SameSite=Strict", "Path=/console", "Max-Age=300"):
            assert attr in cookie, cookie
        session = r.cookies["sluice_session"]
        page = c.get(console.base + "/console/keys")
        assert page.status_code == 200 and 'data-role="admin"' in page.text
        out = c.post(console.base + "/console/sign-out", data={"csrf": csrf_of(page.text)})
        assert out.status_code == 303 and "Max-Age=0" in out.headers["set-cookie"]
    # The old cookie, replayed, is no session any more (the store forgot it).
    with from_address("127.0.0.4") as c:
        r = c.get(console.base + "/console/keys", cookies={"sluice_session": session})
        assert r.status_code == 303 and r.headers["location"] == "/console/sign-in"


def test_failed_sign_ins_are_limited_per_address(console: Console):
    with from_address("127.0.0.2") as c:
        for _ in range(3):
            r = sign_in(c, console.base, "not-the-token")
            assert r.status_code == 401 and "not valid" in r.text
        # Past the limit even the right token is refused until the minute is over.
        r = sign_in(c, console.base, ADMIN_TOKEN)
        assert r.status_code == 429, r.text
        assert 1 <= int(r.headers["retry-after"]) <= 60
        assert "set-cookie" not in r.headers
    with from_address("127.0.0.3") as c:
        assert sign_in(c, console.base, ADMIN_TOKEN).status_code == 303, "another address is not limited"
    req = urllib.request.Request(console.base + "/metrics", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    text = urllib.request.urlopen(req, timeout=10).read().decode()
    assert re.search(r'sluice_console_events_total\{event="sign_in_limited"\} [1-9]', text), text[-2000:]
    assert re.search(r'sluice_console_events_total\{event="sign_in_refused"\} [3-9]', text)


def test_every_write_needs_the_sessions_csrf_token_and_this_origin(console: Console):
    with from_address("127.0.0.5") as c:
        assert sign_in(c, console.base, ADMIN_TOKEN).status_code == 303
        token = csrf_of(c.get(console.base + "/console/keys").text)
        with from_address("127.0.0.6") as other:
            assert sign_in(other, console.base, ADMIN_TOKEN).status_code == 303
            foreign = csrf_of(other.get(console.base + "/console/keys").text)
        assert foreign != token
        attempts = [
            ({"id": "csrf-none"}, {}),
            ({"id": "csrf-foreign", "csrf": foreign}, {}),
            ({"id": "csrf-origin", "csrf": token}, {"origin": "http://attacker.invalid"}),
        ]
        for form, headers in attempts:
            r = c.post(console.base + "/console/keys", data=form, headers=headers)
            assert r.status_code == 403, (form, r.status_code)
        r = c.post(console.base + "/console/keys/traffic/revoke", data={})
        assert r.status_code == 403
        # The same write with the token and this origin goes through.
        ok = c.post(
            console.base + "/console/keys",
            data={"id": "csrf-ok", "csrf": token},
            headers={"origin": console.base},
        )
        assert ok.status_code == 200 and 'id="new-key"' in ok.text
    status, keys = console.admin("GET", "/admin/keys?limit=1000")
    ids = {k["id"] for k in keys["data"]}
    assert "csrf-ok" in ids and not ids & {"csrf-none", "csrf-foreign", "csrf-origin"}
    assert any(k["id"] == "traffic" for k in keys["data"])


def test_sessions_end_when_they_expire_or_their_principal_is_revoked(console: Console):
    pid, token = console.principal("operator")
    with from_address("127.0.0.7") as c:
        assert sign_in(c, console.base, token).status_code == 303
        assert c.get(console.base + "/console/keys").status_code == 200
        status, _ = console.admin("DELETE", f"/admin/principals/{pid}")
        assert status == 200
        r = c.get(console.base + "/console/keys")
        assert r.status_code == 303 and r.headers["location"] == "/console/sign-in"
    with from_address("127.0.0.7") as c:
        assert sign_in(c, console.base, ADMIN_TOKEN).status_code == 303
        assert c.get(console.base + "/console").status_code == 200
        # Move every session's expiry into the past, as time would.
        with sqlite3.connect(console.db) as db:
            n = db.execute("UPDATE console_sessions SET expires_ms = 1").rowcount
        assert n >= 1
        r = c.get(console.base + "/console")
        assert r.status_code == 303 and r.headers["location"] == "/console/sign-in"


# --- in the browser ----------------------------------------------------------------------------------


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    o = webdriver.ChromeOptions()
    o.binary_location = CHROMIUM
    for a in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-features=Translate,OptimizationHints,MediaRouter",
        "--window-size=1400,1600",
        f"--user-data-dir={tempfile.mkdtemp(prefix='sluice-chromium-')}",
    ):
        o.add_argument(a)
    o.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=o)


def browser_sign_in(d, base: str, token: str) -> None:
    from selenium.webdriver.common.by import By

    d.get(base + "/console")
    assert d.current_url.endswith("/console/sign-in")
    d.find_element(By.ID, "token").send_keys(token)
    d.find_element(By.ID, "sign-in").click()
    wait_for_path(d, "/console")


def wait_for_path(d, path: str) -> None:
    """Until the browser is on `path` (a bound for a navigation to finish, not a verdict on speed)."""
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        WebDriverWait(d, 30).until(lambda d: d.current_url.split("?")[0].endswith(path))
    except Exception:
        raise AssertionError(f"not on {path} but {d.current_url}: {d.page_source[:2000]}") from None


def table(d, table_id: str) -> list[list[str]]:
    from selenium.webdriver.common.by import By

    rows = d.find_elements(By.CSS_SELECTOR, f"#{table_id} tbody tr")
    return [[cell.text for cell in r.find_elements(By.CSS_SELECTOR, "th, td")] for r in rows]


def column_sum(rows: list[list[str]], col: int) -> float:
    return sum(float(r[col]) for r in rows if len(r) > col and r[col])


def shot(d, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    assert d.save_screenshot(str(SHOTS / f"{name}.png"))


def csp_violations(d) -> list[str]:
    return [e["message"] for e in d.get_log("browser") if "Content Security Policy" in e["message"]]


def test_the_console_in_a_browser(console: Console):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    # Traffic through the gateway, counted by the SDK's own usage.
    client = console.client(TRAFFIC_KEY)
    tokens = 0
    for i in range(ANSWERED - 1):
        r = client.chat.completions.create(model="chat", messages=[{"role": "user", "content": f"console {i}"}])
        tokens += r.usage.total_tokens
    # One streamed: it has a time to its first token.
    stream = client.chat.completions.create(
        model="chat",
        messages=[{"role": "user", "content": "console stream"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    tokens += sum(chunk.usage.total_tokens for chunk in stream if chunk.usage)
    assert tokens > 0
    for _ in range(FAILED):
        with pytest.raises(openai.APIStatusError) as failed:
            client.chat.completions.create(
                model="chat", messages=[{"role": "user", "content": "fail"}], extra_body={"mock": {"status": 500}}
            )
        assert failed.value.status_code >= 500

    d = browser()
    try:
        browser_sign_in(d, console.base, ADMIN_TOKEN)
        assert "bootstrap" in d.find_element(By.ID, "principal").text

        # Overview: the requests chart's table sums to what was sent, tokens to what the SDK saw.
        requests = table(d, "requests-table")
        assert column_sum(requests, 1) == REQUESTS_SENT, requests
        assert column_sum(table(d, "tokens-table"), 1) == tokens
        errors = table(d, "errors-table")
        assert len(errors[0]) == 2 and column_sum(errors, 1) == FAILED, errors
        for chart in ("latency-table", "ttfb-table", "ttft-table"):
            rows = table(d, chart)
            assert rows and all(float(v) > 0 for v in rows[0][1:]), (chart, rows)
        assert d.find_elements(By.CSS_SELECTOR, "#requests svg polyline, #requests svg circle")
        shot(d, "overview")

        # Usage by key, drilled down into the key's models, and its CSV.
        d.get(console.base + "/console/usage?by=key")
        usage = {r[0]: r for r in table(d, "usage-table")}
        assert float(usage["traffic"][1]) == REQUESTS_SENT and float(usage["traffic"][2]) == tokens, usage
        d.find_element(By.LINK_TEXT, "traffic").click()
        WebDriverWait(d, 30).until(lambda d: "key=traffic" in d.current_url)
        by_model = {r[0]: r for r in table(d, "usage-table")}
        assert float(by_model["chat"][1]) == REQUESTS_SENT, by_model
        shot(d, "usage")
        csv_href = d.find_element(By.ID, "csv").get_attribute("href")
        cookie = d.get_cookie("sluice_session")["value"]
        with Client() as c:
            csv = c.get(csv_href, cookies={"sluice_session": cookie})
        assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
        lines = csv.text.strip().splitlines()
        assert lines[0] == "group,bucket,value,requests"
        assert sum(float(line.split(",")[2]) for line in lines[1:] if line.startswith("chat,")) == REQUESTS_SENT

        # Keys: create one (its secret shown once), use it through the API.
        d.get(console.base + "/console/keys")
        form = d.find_element(By.ID, "create-key")
        form.find_element(By.NAME, "id").send_keys("browser-key")
        form.find_element(By.NAME, "tenant").send_keys("t1")
        form.find_element(By.NAME, "models").send_keys("chat")
        d.find_element(By.ID, "create").click()
        secret = WebDriverWait(d, 30).until(lambda d: d.find_element(By.ID, "new-key")).text
        assert secret.startswith("sk-"), secret
        shot(d, "keys")
        d.get(console.base + "/console/keys")
        assert secret not in d.page_source, "a key's secret is shown once"
        new_client = console.client(secret)
        assert new_client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}]).id

        # Edit its limits in the console; the gateway enforces them.
        d.get(console.base + "/console/keys/browser-key")
        limits = d.find_element(By.ID, "limits-keys-browser-key")
        field = limits.find_element(By.NAME, "requests_per_minute")
        field.clear()
        field.send_keys("1")
        limits.find_element(By.CSS_SELECTOR, "button.set-limits").click()
        WebDriverWait(d, 30).until(lambda d: d.find_element(By.ID, "limits-keys-browser-key") != limits)
        wait_for_path(d, "/console/keys/browser-key")
        value = d.find_element(By.ID, "limits-keys-browser-key").find_element(By.NAME, "requests_per_minute")
        assert value.get_attribute("value") == "1"
        assert new_client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "one"}]).id
        with pytest.raises(openai.RateLimitError):
            new_client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "two"}])
        shot(d, "key")

        # Revoke it in the console: the API refuses it with 401.
        d.find_element(By.ID, "revoke").click()
        WebDriverWait(d, 30).until(lambda d: not d.find_elements(By.ID, "revoke"))
        assert d.find_element(By.ID, "key-status").text.startswith("revoked")
        with pytest.raises(openai.AuthenticationError):
            new_client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}])

        # The other pages render what the API says, and the audit log has the console's writes.
        for path, name, element in (
            ("/console/budgets", "budgets", "runtime-keys"),
            ("/console/deployments", "deployments", "deployments-table"),
            ("/console/routes", "routes", "routes-table"),
            ("/console/requests", "requests", "requests-table"),
            ("/console/audit", "audit", "audit-table"),
        ):
            d.get(console.base + path)
            assert d.find_element(By.ID, element)
            shot(d, name)
        d.get(console.base + "/console/deployments")
        assert table(d, "deployments-table")[0][:2] == ["mock-a", "closed"]
        d.get(console.base + "/console/requests")
        assert sum(1 for r in table(d, "requests-table") if r[2] == "traffic") == REQUESTS_SENT
        d.get(console.base + "/console/audit")
        actions = [r[3] for r in table(d, "audit-table")]
        assert any("revoke" in a for a in actions) and any("limit" in a for a in actions), actions
        assert "bootstrap" in d.find_element(By.ID, "audit-table").text
        d.get(console.base + "/console/budgets")
        assert any(r[0] == "browser-key" for r in table(d, "runtime-keys"))

        assert csp_violations(d) == [], "the pages work under their own Content-Security-Policy"
        d.find_element(By.ID, "sign-out").click()
        wait_for_path(d, "/console/sign-in")
    finally:
        d.quit()


def test_a_viewer_sees_no_write_buttons_and_its_writes_are_refused(console: Console):
    from selenium.webdriver.common.by import By

    _, viewer = console.principal("viewer")
    d = browser()
    try:
        browser_sign_in(d, console.base, viewer)
        assert d.find_element(By.ID, "principal").get_attribute("data-role") == "viewer"
        d.get(console.base + "/console/keys")
        assert table(d, "keys-table"), "a viewer reads keys"
        assert not d.find_elements(By.ID, "create-key")
        d.get(console.base + "/console/keys/traffic")
        assert not d.find_elements(By.ID, "revoke")
        assert not d.find_elements(By.CSS_SELECTOR, "form.limits")
        d.get(console.base + "/console/budgets")
        assert not d.find_elements(By.CSS_SELECTOR, "form.limits")
        shot(d, "viewer-keys")
        # The viewer's own session, writing anyway (its CSRF token and all): refused by the API.
        cookie = d.get_cookie("sluice_session")["value"]
        token = csrf_of(d.page_source)
    finally:
        d.quit()
    with Client() as c:
        jar = {"sluice_session": cookie}
        r = c.post(console.base + "/console/keys", data={"id": "by-viewer", "csrf": token}, cookies=jar)
        assert r.status_code == 403 and "viewer" in r.text
        r = c.post(console.base + "/console/keys/traffic/revoke", data={"csrf": token}, cookies=jar)
        assert r.status_code == 403
        r = c.post(
            console.base + "/console/limits",
            data={"csrf": token, "scope": "keys", "name": "traffic", "requests_per_minute": "1"},
            cookies=jar,
        )
        assert r.status_code == 403
    status, keys = console.admin("GET", "/admin/keys?limit=1000")
    assert not any(k["id"] == "by-viewer" for k in keys["data"])
    assert next(k for k in keys["data"] if k["id"] == "traffic")["revoked_at"] is None
    status, limits = console.admin("GET", "/admin/limits")
    assert "traffic" not in limits["keys"]


def test_a_tenant_principal_sees_only_its_tenant(console: Console):
    from selenium.webdriver.common.by import By

    console.client(OTHER_KEY).chat.completions.create(model="chat", messages=[{"role": "user", "content": "t2"}])
    _, t2 = console.principal("operator", tenant="t2")
    d = browser()
    try:
        browser_sign_in(d, console.base, t2)
        assert column_sum(table(d, "requests-table"), 1) == 1, "t2 sent one request; t1's are not shown"
        nav = d.find_element(By.CSS_SELECTOR, "header nav").text
        assert "Deployments" not in nav and "Routes" not in nav, nav
        d.get(console.base + "/console/keys")
        ids = [r[0] for r in table(d, "keys-table")]
        assert ids == ["other"], ids
        d.get(console.base + "/console/deployments")
        assert "gateway-wide" in d.find_element(By.CSS_SELECTOR, ".problem").text
        shot(d, "tenant-overview")
    finally:
        d.quit()
