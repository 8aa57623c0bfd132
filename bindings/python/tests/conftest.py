"""Fixtures: the repo's real fake token server and real store files in a temp dir."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
FAKE_SERVER = REPO_ROOT / "testing" / "fake_token_server.py"

# Short on purpose: strings shaped like real tokens must never be committed.
ACCESS_1 = "sk-ant-oat01-fake-a1"
REFRESH_1 = "sk-ant-ort01-fake-r1"

HOUR_MS = 3_600_000


def now_ms() -> int:
    return int(time.time() * 1000)


class FakeServer:
    def __init__(self, proc: subprocess.Popen[str], base: str) -> None:
        self.proc = proc
        self.base = base
        self.token_url = base + "/v1/oauth/token"

    def _request(self, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.base + path, data=data, method="GET" if data is None else "POST"
        )
        req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self._request("/_admin/stats")
        return result

    def posts(self) -> int:
        return int(self.stats()["posts"])

    def script(self, *faults: dict[str, Any]) -> None:
        self._request("/_admin/script", {"faults": list(faults)})

    def revoke_all(self) -> None:
        self._request("/_admin/revoke", {"all": True})

    def reset(self) -> None:
        self._request("/_admin/reset", {})


@pytest.fixture(scope="session")
def server() -> Iterator[FakeServer]:
    proc = subprocess.Popen(
        [sys.executable, str(FAKE_SERVER), "--exit-on-stdin-eof"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    base = proc.stdout.readline().strip()
    assert base.startswith("http://127.0.0.1:"), base
    try:
        yield FakeServer(proc, base)
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(autouse=True)
def _fresh_server(request: pytest.FixtureRequest) -> None:
    # Only for tests that use the server: counters, script queue and spent tokens start empty.
    if "server" in request.fixturenames:
        request.getfixturevalue("server").reset()


class Home:
    """One machine's stores: a Hermes pool file and a Claude Code credentials file."""

    def __init__(self, root: Path, token_url: str) -> None:
        self.root = root
        self.pool_path = root / "hermes" / "auth.json"
        self.credentials_path = root / "claude" / ".credentials.json"
        self.token_url = token_url

    def write_credentials(
        self,
        *,
        expires_at_ms: int,
        access_token: str = ACCESS_1,
        refresh_token: str = REFRESH_1,
    ) -> None:
        self.credentials_path.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "claudeAiOauth": {
                "accessToken": access_token,
                "refreshToken": refresh_token,
                "expiresAt": expires_at_ms,
                "scopes": ["user:inference"],
                "subscriptionType": "max",
                "rateLimitTier": "default_claude_max_20x",
            },
            "otherTool": {"keep": True},
        }
        self.credentials_path.write_text(json.dumps(doc))
        os.chmod(self.credentials_path, 0o600)

    def credentials(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.credentials_path.read_text())
        return result

    def config(self, **overrides: Any) -> dict[str, Any]:
        config: dict[str, Any] = {
            "pool_path": str(self.pool_path),
            "credentials_path": str(self.credentials_path),
            "token_urls": [self.token_url],
            "lock_timeout_ms": 10_000,
            "http_timeout_ms": 5_000,
        }
        config.update(overrides)
        return config


@pytest.fixture
def home(tmp_path: Path, server: FakeServer) -> Home:
    return Home(tmp_path, server.token_url)


@pytest.fixture
def expired(home: Home) -> Home:
    """Credentials whose access token expired a minute ago: the next resolve refreshes."""
    home.write_credentials(expires_at_ms=now_ms() - 60_000)
    return home


@pytest.fixture
def valid(home: Home) -> Home:
    """Credentials valid for hours: resolves need no POST."""
    home.write_credentials(expires_at_ms=now_ms() + 5 * HOUR_MS)
    return home


FAKE_MESSAGES_API = REPO_ROOT / "testing" / "fake_messages_api.py"


class MessagesApi:
    """testing/fake_messages_api.py: a real HTTP server standing in for api.anthropic.com."""

    def __init__(self, base: str) -> None:
        self.base = base

    def _request(self, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.base + path, data=data, method="GET" if data is None else "POST"
        )
        req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def log(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._request("/_admin/stats")["log"]
        return result

    def script(self, *answers: dict[str, Any]) -> None:
        self._request("/_admin/script", {"answers": list(answers)})

    def reset(self) -> None:
        self._request("/_admin/reset", {})


@pytest.fixture(scope="session")
def _messages_api_process() -> Iterator[MessagesApi]:
    proc = subprocess.Popen(
        [sys.executable, str(FAKE_MESSAGES_API), "--exit-on-stdin-eof"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    base = proc.stdout.readline().strip()
    assert base.startswith("http://127.0.0.1:"), base
    try:
        yield MessagesApi(base)
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def messages_api(_messages_api_process: MessagesApi) -> MessagesApi:
    """The fake Messages API with an empty log and script."""
    _messages_api_process.reset()
    return _messages_api_process
