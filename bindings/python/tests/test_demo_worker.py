"""The README demo's Python worker prints one JSON line, on success and on failure."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import hap_oauth as hap

from conftest import FakeServer, Home, now_ms

WORKER = Path(__file__).resolve().parents[1] / "demo_worker.py"


def run_worker(config: dict[str, object], **env: str) -> tuple[int, dict[str, object]]:
    full_env = dict(os.environ, HAP_DEMO_CONFIG=json.dumps(config), **env)
    # Run from the checkout, as the README does: the library this process loaded.
    full_env["HAP_LIBRARY_PATH"] = hap.library_path()
    result = subprocess.run(
        [sys.executable, str(WORKER)], env=full_env, capture_output=True, text=True, check=False
    )
    lines = result.stdout.splitlines()
    assert len(lines) == 1, (result.stdout, result.stderr)
    return result.returncode, json.loads(lines[0])


def test_worker_refreshes_and_reports(expired: Home, server: FakeServer) -> None:
    code, line = run_worker(expired.config(), HAP_DEMO_START_AT_MS=str(now_ms() + 200))
    assert code == 0
    access = expired.credentials()["claudeAiOauth"]["accessToken"]
    assert line["lang"] == "python"
    assert isinstance(line["pid"], int)
    assert line["refreshed"] is True
    assert line["token_sha256"] == hashlib.sha256(access.encode()).hexdigest()[:12]
    assert isinstance(line["credential_id"], str)
    assert server.posts() == 1


def test_worker_reports_errors_by_status_name(home: Home) -> None:
    code, line = run_worker(home.config())
    assert code == 1
    assert line["lang"] == "python"
    assert line["error"] == "HAP_STATUS_NO_CREDENTIAL"
    assert line["message"]
