"""hap-oauth-hermes with a real, unmodified hermes-agent 0.19.0 (from the Python index).

Run by ci.sh with the Python of the Hermes venv (the plugin and the hap binding installed in
it). Races use bench/race.py: N real Hermes processes, each with its own profile, load
their plugins as Hermes' CLI does (``hermes_cli.plugins.discover_plugins()``), then select an
Anthropic credential at one instant, racing one expired Claude Code login on the fake token
server. The single-process tests below the races drive Hermes' own pool methods, the ones
its agent loop calls on a 401 or a 429.
"""

from __future__ import annotations

import hashlib
import importlib.util
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

REPO = Path(__file__).resolve().parents[4]
FAKE_SERVER = REPO / "testing" / "fake_token_server.py"


def _load_race() -> Any:
    spec = importlib.util.spec_from_file_location("hap_bench_race", REPO / "bench" / "race.py")
    assert spec is not None
    assert spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


race = _load_race()
HERMES_PY = sys.executable
KEPT = {"claudeAiOauth.subscriptionType", "claudeAiOauth.rateLimitTier"}


# ------------------------------------------------------------------------------ races


def test_race_n8_with_the_plugin_one_post_every_process_a_token() -> None:
    r = race.one_race("hermes-plugin", 8, 100, HERMES_PY)
    assert r["plugin_active"] == 8, r
    assert r["posts"] == 1, r
    assert r["invalid_grant"] == 0, r
    assert r["no_token"] == 0, r
    assert r["distinct_tokens"] == 1, r
    assert r["hermes_own_posts"] == 0, r
    assert r["dropped_credentials_keys"] == [], r
    assert r["dropped_auth_json_keys"] == [], r
    assert r["auth_json_with_token_copy"] == 0, r
    assert r["session_alive_after"], r
    assert r["files_parse"], r


def _as_before(r: dict[str, Any], plain: dict[str, Any]) -> None:
    """The plugin changed nothing: Hermes POSTed and wrote back itself, as plain Hermes."""
    assert r["plugin_active"] == 0, r
    for key in ("posts", "hermes_own_posts", "no_token", "dropped_credentials_keys"):
        assert r[key] == plain[key], (key, r, plain)
    # Hermes' own write-back, as before: the fields it does not know are gone.
    assert set(r["dropped_credentials_keys"]) >= KEPT, r


@pytest.fixture(scope="module")
def plain() -> dict[str, Any]:
    """Hermes without the plugin installed in its way: one process, one expired login."""
    r: dict[str, Any] = race.one_race("hermes", 1, 0, HERMES_PY)
    assert r["hermes_own_posts"] == 1, r
    return r


def test_without_enabling_it_hermes_behaves_as_before(plain: dict[str, Any]) -> None:
    _as_before(race.one_race("hermes-plugin", 1, 0, HERMES_PY, plugin_enabled=False), plain)


def test_an_unknown_hermes_version_is_left_alone(plain: dict[str, Any]) -> None:
    r = race.one_race("hermes-plugin", 1, 0, HERMES_PY, fake_hermes_version="0.20.0")
    _as_before(r, plain)


def test_the_one_line_it_logs_when_it_stays_out(tmp_path: Path) -> None:
    home = tmp_path / "home"
    prof = home / ".hermes"
    prof.mkdir(parents=True)
    (prof / "config.yaml").write_text(
        "model:\n  provider: anthropic\nplugins:\n  enabled:\n  - hap-oauth\n"
    )
    code = (
        "import importlib.metadata as m\n"
        "real = m.version\n"
        "m.version = lambda n: '0.20.0' if n == 'hermes-agent' else real(n)\n"
        "from hermes_cli.plugins import discover_plugins\n"
        "discover_plugins()\n"
        "import hap_oauth_hermes as p\n"
        "import agent.credential_pool as cp\n"
        "assert not p._installed\n"
        "assert cp.CredentialPool._refresh_entry.__module__ == 'agent.credential_pool'\n"
        "assert cp.write_credential_pool.__module__ == 'hermes_cli.auth'\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HERMES_", "HAP_"))}
    env.update(HOME=str(home), HERMES_HOME=str(prof))
    out = subprocess.run(
        [HERMES_PY, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-3000:]
    lines = [ln for ln in out.stderr.splitlines() if "hap-oauth" in ln]
    assert len(lines) == 1, out.stderr[-3000:]
    assert "not active" in lines[0]
    assert "0.20.0" in lines[0]


def test_hermes_plugins_enable_turns_it_on(tmp_path: Path) -> None:
    """The documented way in: Hermes' own `hermes plugins enable hap-oauth`, then the plugins
    loaded as its CLI loads them."""
    home = tmp_path / "home"
    prof = home / ".hermes" / "profiles" / "p0"
    prof.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HERMES_", "HAP_"))}
    env.update(HOME=str(home), HERMES_HOME=str(prof))
    hermes_cli = Path(HERMES_PY).parent / "hermes"
    enable = subprocess.run(
        [str(hermes_cli), "plugins", "enable", "hap-oauth"],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert enable.returncode == 0, enable.stdout + enable.stderr
    code = (
        "from hermes_cli.plugins import discover_plugins\n"
        "discover_plugins()\n"
        "import hap_oauth_hermes\n"
        "print(hap_oauth_hermes._installed)\n"
    )
    out = subprocess.run(
        [HERMES_PY, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.stdout.strip().splitlines()[-1:] == ["True"], out.stdout + out.stderr


# ------------------------------------------------------------------ one Hermes process


class Server:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(FAKE_SERVER), "--exit-on-stdin-eof"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.base = self.proc.stdout.readline().strip()

    def admin(self, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data)
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.close()


@pytest.fixture(scope="module")
def _hermes_home(tmp_path_factory: pytest.TempPathFactory, server: Server) -> Iterator[Path]:
    """This process as a Hermes user's: a home, HAP_CONFIG, the plugin loaded by Hermes."""
    root = tmp_path_factory.mktemp("hermes")
    home = root / "home"
    hap_config = root / "hap-config.json"
    hap_config.write_text(json.dumps({"token_urls": [server.base + "/v1/oauth/token"]}))
    saved = dict(os.environ)
    for k in list(os.environ):
        if k.startswith(("HERMES_", "ANTHROPIC_", "CLAUDE_", "HAP_CONFIG")):
            del os.environ[k]
    os.environ.update(HOME=str(home), HAP_CONFIG=str(hap_config))
    os.environ["HERMES_HOME"] = str(new_profile(home, "first"))
    from hermes_cli.plugins import discover_plugins

    discover_plugins()
    import hap_oauth_hermes

    assert hap_oauth_hermes._installed
    yield home
    os.environ.clear()
    os.environ.update(saved)


def new_profile(home: Path, name: str) -> Path:
    # A profile, not ~/.hermes itself: under pytest Hermes refuses to touch ~/.hermes/auth.json.
    prof = home / ".hermes" / "profiles" / name
    prof.mkdir(parents=True)
    (prof / "config.yaml").write_text(
        "model:\n  provider: anthropic\nplugins:\n  enabled:\n  - hap-oauth\n"
    )
    return prof


@pytest.fixture
def hermes(
    _hermes_home: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A profile of its own for each test (Hermes' rows carry state from test to test)."""
    monkeypatch.setenv("HERMES_HOME", str(new_profile(_hermes_home, request.node.name)))
    return _hermes_home


def fresh_login(home: Path, server: Server, *, expired: bool) -> str:
    """A new Claude Code login (the server minted it), valid for hours or expired."""
    pair = server.admin("/_admin/issue", {})
    doc = {
        "claudeAiOauth": {
            "accessToken": pair["access_token"],
            "refreshToken": pair["refresh_token"],
            "expiresAt": int(time.time() * 1000) + (-60_000 if expired else 5 * 3_600_000),
            "scopes": ["user:inference"],
            "subscriptionType": "max",
            "rateLimitTier": "default_claude_max_20x",
        },
        "otherTool": {"keep": True},
    }
    path = home / ".claude" / ".credentials.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    path.chmod(0o600)
    server.admin("/_admin/reset", {})
    token: str = pair["access_token"]
    return token


def creds(home: Path) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((home / ".claude" / ".credentials.json").read_text())
    return result


def row(home: Path, row_id: str) -> dict[str, Any]:
    doc = json.loads((Path(os.environ["HERMES_HOME"]) / "auth.json").read_text())
    (found,) = [r for r in doc["credential_pool"]["anthropic"] if r["id"] == row_id]
    return dict(found)


def fingerprint(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()[:16]


@pytest.fixture
def reports(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """Every report_failure the binding makes, recorded, then made for real."""
    import hap_oauth_hermes

    seen: list[tuple[Any, ...]] = []
    cls = hap_oauth_hermes._hap.Pool
    real = cls.report_failure

    def spy(self: Any, credential_id: str, status_code: int, **kw: Any) -> Any:
        seen.append((credential_id, status_code, kw))
        return real(self, credential_id, status_code, **kw)

    monkeypatch.setattr(cls, "report_failure", spy)
    return seen


def hap_posts_only(server: Server) -> int:
    log = server.admin("/_admin/stats")["log"]
    assert all((e["user_agent"] or "").startswith("hap/") for e in log), log
    return len(log)


def test_select_of_an_expired_login_refreshes_through_hap(hermes: Path, server: Server) -> None:
    from agent.credential_pool import load_pool

    old = fresh_login(hermes, server, expired=True)
    entry = load_pool("anthropic").select()
    assert entry is not None
    assert entry.access_token != old
    assert entry.access_token == creds(hermes)["claudeAiOauth"]["accessToken"]
    assert hap_posts_only(server) == 1
    assert creds(hermes)["claudeAiOauth"]["subscriptionType"] == "max"
    assert creds(hermes)["otherTool"] == {"keep": True}


def test_a_401_hermes_refreshes_for_goes_through_hap(
    hermes: Path, server: Server, reports: list[tuple[Any, ...]]
) -> None:
    from agent.credential_pool import load_pool

    old = fresh_login(hermes, server, expired=False)
    pool = load_pool("anthropic")
    entry = pool.select()
    assert entry is not None
    assert entry.access_token == old
    # What Hermes' agent loop does on a 401 (agent_runtime_helpers): refresh the current entry.
    refreshed = pool.try_refresh_current()
    assert refreshed is not None
    assert refreshed.access_token != old
    assert refreshed.access_token == creds(hermes)["claudeAiOauth"]["accessToken"]
    assert [(r[0], r[1]) for r in reports] == [(entry.id, 401)]
    assert hap_posts_only(server) == 1
    assert creds(hermes)["claudeAiOauth"]["rateLimitTier"] == "default_claude_max_20x"


def test_a_401_hermes_records_reaches_hap_and_the_marker_survives_hermes_rewrites(
    hermes: Path, server: Server, reports: list[tuple[Any, ...]]
) -> None:
    from agent.credential_pool import load_pool

    old = fresh_login(hermes, server, expired=False)
    pool = load_pool("anthropic")
    entry = pool.select()
    assert entry is not None
    # Hermes benches the entry after a 401 it could not refresh away: the plugin reports it
    # to hap (the marker), then Hermes' own code persists its rows whole.
    pool.mark_exhausted_and_rotate(status_code=401, error_context={"reason": "unauthorized"})
    assert [(r[0], r[1]) for r in reports] == [(entry.id, 401)]
    on_disk = row(hermes, entry.id)
    assert on_disk["last_status"] == "exhausted"  # Hermes' own bookkeeping
    assert on_disk["hap_rejected_fingerprint"] == fingerprint(old)
    # Any later rewrite (every load_pool that changes something, every status change).
    load_pool("anthropic")._persist()
    assert row(hermes, entry.id)["hap_rejected_fingerprint"] == fingerprint(old)
    assert hap_posts_only(server) == 0


def test_after_hermes_rewrites_its_rows_hap_still_refreshes_a_refused_token(
    hermes: Path, server: Server
) -> None:
    """A 401 another process reported through hap, then Hermes rewriting its rows: the next
    resolve must refresh, not serve the refused token again."""
    import hap_oauth_hermes
    from agent.credential_pool import load_pool

    old = fresh_login(hermes, server, expired=False)
    entry = load_pool("anthropic").select()
    assert entry is not None
    hap = hap_oauth_hermes._pool()
    assert hap.resolve_token(credential_id=entry.id).access_token == old
    assert hap.report_failure(entry.id, 401).last_status == "refresh_pending"
    load_pool("anthropic")._persist()
    token = hap.resolve_token(credential_id=entry.id)
    assert token.access_token != old
    assert token.refreshed
    assert hap_posts_only(server) == 1


def test_a_429_hermes_records_reaches_hap(
    hermes: Path, server: Server, reports: list[tuple[Any, ...]]
) -> None:
    from agent.credential_pool import load_pool

    fresh_login(hermes, server, expired=False)
    pool = load_pool("anthropic")
    entry = pool.select()
    assert entry is not None
    reset = time.time() + 600
    pool.mark_exhausted_and_rotate(status_code=429, error_context={"reset_at": reset})
    ((cid, code, kw),) = reports
    assert (cid, code) == (entry.id, 429)
    assert abs(kw["reset_at"] - reset) < 1
    assert hap_posts_only(server) == 0


def test_the_pool_less_refresh_goes_through_hap(hermes: Path, server: Server) -> None:
    from agent import anthropic_adapter

    old = fresh_login(hermes, server, expired=True)
    token = anthropic_adapter.resolve_anthropic_token()
    assert token is not None
    assert token != old
    assert token == creds(hermes)["claudeAiOauth"]["accessToken"]
    assert creds(hermes)["claudeAiOauth"]["subscriptionType"] == "max"
    assert hap_posts_only(server) == 1
