"""HAP_CONFIG through the binding: ``hap.Pool()`` passes ``{}``, and the file still applies."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import FakeServer, Home

SCRIPT = """
import json
import hap_oauth as hap
try:
    with hap.Pool() as pool:
        t = pool.resolve_token()
        print(json.dumps({"refreshed": t.refreshed, "credential_id": t.credential_id}))
except hap.HapError as e:
    print(json.dumps({"error": e.name, "message": e.message, "path": e.path}))
"""


def run(hap_config: Path) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HERMES_", "CLAUDE_"))}
    env.update(HAP_CONFIG=str(hap_config), HOME="/nonexistent-hap-home")
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    result: dict[str, object] = json.loads(out.stdout.splitlines()[-1])
    return result


def test_a_pool_opened_without_config_takes_the_file(
    expired: Home, server: FakeServer, tmp_path: Path
) -> None:
    file = tmp_path / "hap.json"
    file.write_text(json.dumps(expired.config()))
    assert run(file)["refreshed"] is True
    assert server.posts() == 1


def test_a_bad_file_is_invalid_argument_naming_it(
    valid: Home, server: FakeServer, tmp_path: Path
) -> None:
    file = tmp_path / "hap.json"
    file.write_text(json.dumps({**valid.config(), "lock_timeout": 5}))
    result = run(file)
    assert result["error"] == "HAP_STATUS_INVALID_ARGUMENT"
    assert str(file) in str(result["message"])
    assert "'lock_timeout'" in str(result["message"])
    assert result["path"] == str(file)
    assert server.posts() == 0
