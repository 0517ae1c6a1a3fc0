"""Schemathesis against the admin API's own OpenAPI document, on a real gateway.

Every operation the document names is called with generated requests (examples, boundary
values, random bodies and queries — bounded by `--max-examples` and a time limit); the run fails
on any 5xx, any status the document does not list, and any response whose content type or
body does not match the document.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import MOCK_CREDENTIAL, UPSTREAM_MODEL, free_port, http_get, sluice_bin, start

ADMIN_TOKEN = "admin-" + secrets.token_hex(12)
RUN_LIMIT_S = 240

CONFIG = """\
server: {{ listen: "127.0.0.1:{gw_port}" }}
admin: {{ listen: "127.0.0.1:{admin_port}", token_env: ADMIN_LANE_TOKEN }}
store: {{ sqlite_path: "{db}" }}
ledger: {{ dir: "{ledger}" }}
logging: {{ access_log: off }}
deployments:
  - {{ name: mock-a, provider: openai, base_url: "{mock_base}/v1", model: {upstream}, api_key_env: ADMIN_LANE_MOCK_KEY }}
models:
  - {{ name: chat, deployments: [mock-a] }}
routes:
  - name: default
"""


def test_schemathesis_finds_no_5xx_and_no_response_outside_the_spec(tmp_path: Path):
    binary = sluice_bin()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SDK_LANE_", "ADMIN_LANE_"))}
    env["ADMIN_LANE_MOCK_KEY"] = MOCK_CREDENTIAL
    env["ADMIN_LANE_TOKEN"] = ADMIN_TOKEN
    mock_port = free_port()
    mock = start(
        "mock",
        [binary, "mock", "--listen", f"127.0.0.1:{mock_port}", "--api-key-env", "ADMIN_LANE_MOCK_KEY"],
        tmp_path,
        mock_port,
        env,
        "/mock/stats",
    )
    gw_port, admin_port = free_port(), free_port()
    config = tmp_path / "sluice.yaml"
    config.write_text(
        CONFIG.format(
            gw_port=gw_port,
            admin_port=admin_port,
            db=tmp_path / "keys.db",
            ledger=tmp_path / "ledger",
            mock_base=mock.base,
            upstream=UPSTREAM_MODEL,
        )
    )
    try:
        gateway = start("gateway", [binary, "serve", "--config", str(config)], tmp_path, gw_port, env, "/healthz")
    except BaseException:
        mock.stop()
        raise
    try:
        spec_url = f"http://127.0.0.1:{admin_port}/admin/openapi.json"
        auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        status, _ = http_get(spec_url)
        assert status == 401, "the document is behind the admin token too"
        status, _ = http_get(spec_url, headers=auth)
        assert status == 200

        cli = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or "schemathesis"
        run = subprocess.run(
            [
                cli,
                "run",
                spec_url,
                "--header",
                f"Authorization: Bearer {ADMIN_TOKEN}",
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
                "--max-examples",
                "25",
                "--seed",
                "1515",
                "--request-timeout",
                "10",
                "--no-color",
            ],
            capture_output=True,
            text=True,
            timeout=RUN_LIMIT_S,
            cwd=tmp_path,
            env=dict(env, SCHEMATHESIS_HOOKS=""),
        )
        out = run.stdout + run.stderr
        assert run.returncode == 0, out[-8000:]
        # It really ran every operation (20) and made hundreds of requests, all passing.
        assert "Tested: 20" in out, out[-3000:]
        counts = re.search(r"(\d+) generated, (\d+) passed", out)
        assert counts and int(counts[1]) >= 200 and counts[1] == counts[2], out[-3000:]
    finally:
        gateway.stop()
        mock.stop()
