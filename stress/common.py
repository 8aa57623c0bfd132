"""Shared pieces of the stress drivers: the fake token server, store fixtures seeded with
unknown keys at every level, the workers of every language, and file checks.

Every worker prints one summary JSON line (see worker.c for the format): calls, ok,
refreshed, token_changes, expired_served, max_call_ms, errors {status name: count},
messages (at most 5, never a token).
"""

import hashlib
import json
import os
import subprocess
import sys
import time
import urllib.request

STRESS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(STRESS)
BUILD = os.path.join(STRESS, "build")
LIB = os.environ.get("HAP_LIBRARY_PATH", os.path.join(REPO, "target/release/libhap.so"))
FAULT_WORKER = os.environ.get("HAP_FAULT_WORKER") or os.path.join(
    REPO, "target/fault/release/examples/hap_worker"
)


def now_ms():
    return int(time.time() * 1000)


def sha16(token):
    """The server log's refresh_token_sha256: first 16 hex of sha256."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


class FakeServer:
    def __init__(self, expires_in=3600):
        self.proc = subprocess.Popen(
            [
                sys.executable,
                os.path.join(REPO, "testing/fake_token_server.py"),
                "--exit-on-stdin-eof",
                "--expires-in",
                str(expires_in),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.base = self.proc.stdout.readline().strip()
        if not self.base.startswith("http"):
            raise RuntimeError("the fake token server did not start")
        self.token_url = self.base + "/v1/oauth/token"

    def admin(self, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method="GET" if body is None else "POST")
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.load(r)

    def stats(self):
        return self.admin("/_admin/stats")

    def post_refresh(self, refresh_token, user_agent, client_id="9d1c250a-e61b-44d9-88ed-5944d1962f5e"):
        """A refresh POST as another program would send it: (status, body)."""
        body = json.dumps(
            {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": client_id}
        ).encode()
        req = urllib.request.Request(
            self.token_url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": user_agent},
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.load(r)
        except urllib.error.HTTPError as e:
            try:
                return e.code, json.load(e)
            except ValueError:
                return e.code, {}

    def close(self):
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=10)
        except Exception:
            self.proc.kill()


# -- fixtures: unknown keys at every level --------------------------------------------------

CREDS_UNKNOWN = {
    ("claudeAiOauth", "subscriptionType"): "max",
    ("claudeAiOauth", "rateLimitTier"): "default_claude_max_20x",
    ("claudeAiOauth", "xStressFuture"): {"nested": [1, {"deep": True}], "s": "keep"},
    ("mcpOAuth",): {"server-a": {"accessToken": "not-hap-a1", "expiresAt": 1, "x": [1]}},
    ("otherTool",): {"keep": True},
    ("xStressTop",): [1, 2, {"three": 3}],
}


def write_json_atomic(path, doc, mode=0o600):
    tmp = f"{path}.stress-tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def creds_doc(access, refresh, expires_at_ms):
    doc = {
        "claudeAiOauth": {
            "accessToken": access,
            "refreshToken": refresh,
            "expiresAt": expires_at_ms,
            "scopes": ["user:inference"],
        }
    }
    for path, value in CREDS_UNKNOWN.items():
        d = doc
        for k in path[:-1]:
            d = d.setdefault(k, {})
        d[path[-1]] = value
    return doc


def write_creds(path, access, refresh, expires_at_ms):
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    write_json_atomic(path, creds_doc(access, refresh, expires_at_ms))


def pool_unknown(tag, manual=True):
    """(path, value) of every unknown key seeded into pool file `tag`. Path elements are keys,
    or ("row", id) to step into credential_pool.anthropic's row with that id."""
    d = {
        ("xStressTop",): {"deep": {"deeper": [1, 2]}, "tag": tag},
        ("providers",): {"nous": {"x": 1}},
        ("active_provider",): "anthropic",
        ("credential_pool", "openrouter"): [{"id": "or1", "api_key": "not-a-key", "x": 1}],
        ("credential_pool", "xStressPoolKey"): {"keep": 1},
        ("credential_pool", "anthropic", ("row", f"cc{tag}"), "xStressRow"): {"keep": "cc"},
    }
    if manual:
        d[("credential_pool", "anthropic", ("row", f"m{tag}"), "xStressRow")] = {"keep": [1, 2]}
    return d


def pool_doc(tag, manual_refresh=None, manual_access=None, expires_at_ms=None):
    """A Hermes auth.json with a pre-seeded claude_code row and (optionally) a manual row that
    owns its tokens, both carrying unknown keys."""
    rows = [
        {
            "id": f"cc{tag}",
            "label": "claude_code",
            "auth_type": "oauth",
            "priority": 0,
            "source": "claude_code",
            "xStressRow": {"keep": "cc"},
        }
    ]
    if manual_refresh:
        rows.append(
            {
                "id": f"m{tag}",
                "label": f"manual-{tag}",
                "auth_type": "oauth",
                "priority": 1,
                "source": "manual",
                "access_token": manual_access,
                "refresh_token": manual_refresh,
                "expires_at_ms": expires_at_ms,
                "request_count": 0,
                "xStressRow": {"keep": [1, 2]},
            }
        )
    return {
        "version": 1,
        "providers": {"nous": {"x": 1}},
        "active_provider": "anthropic",
        "credential_pool": {
            "anthropic": rows,
            "openrouter": [{"id": "or1", "api_key": "not-a-key", "x": 1}],
            "xStressPoolKey": {"keep": 1},
        },
        "updated_at": "2026-01-01T00:00:00Z",
        "xStressTop": {"deep": {"deeper": [1, 2]}, "tag": tag},
    }


def lookup(doc, path):
    d = doc
    for k in path:
        if isinstance(k, tuple):
            d = next((r for r in d if isinstance(r, dict) and r.get("id") == k[1]), None)
        elif isinstance(d, dict):
            d = d.get(k, None)
        else:
            d = None
        if d is None:
            return None
    return d


def survivors(doc, expected):
    """(kept, total, [missing path strings])"""
    missing = []
    for path, value in expected.items():
        if doc is None or lookup(doc, path) != value:
            missing.append("/".join(k[1] if isinstance(k, tuple) else k for k in path))
    return len(expected) - len(missing), len(expected), missing


def read_json(path):
    """('ok', doc) | ('missing', None) | ('torn', raw bytes length)."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return "missing", None
    try:
        return "ok", json.loads(raw)
    except ValueError:
        return "torn", len(raw)


def pool_rows(doc, provider="anthropic"):
    if not isinstance(doc, dict):
        return []
    return (doc.get("credential_pool") or {}).get(provider) or []


def journal_path(store):
    d, name = os.path.split(store)
    stem = name[:-5] if name.endswith(".json") else name
    return os.path.join(d, ("" if stem.startswith(".") else ".") + stem + ".hap-journal.json")


# -- workers --------------------------------------------------------------------------------


def worker_cmds():
    """lang -> (argv, extra env) for the looping workers that are built."""
    cmds = {
        "c": ([os.path.join(BUILD, "c-worker"), "loop"], {}),
        "python": (
            [sys.executable, os.path.join(STRESS, "workers/worker.py")],
            {"PYTHONPATH": os.path.join(REPO, "bindings/python")},
        ),
        "node": (["node", os.path.join(STRESS, "workers/worker.js")], {}),
        "go": ([os.path.join(BUILD, "go-worker")], {}),
    }
    have = {}
    for lang, (argv, extra) in cmds.items():
        exe = argv[1] if argv[0] in (sys.executable, "node") else argv[0]
        if lang == "node" and not os.path.isdir(os.path.join(REPO, "bindings/node/node_modules/koffi")):
            continue
        if os.path.exists(exe):
            have[lang] = (argv, extra)
    return have


def start_worker(
    lang, cmds, config, until_ms=None, start_at_ms=None, min_validity_ms=None, pause_ms=None, extra_env=None
):
    argv, extra = cmds[lang]
    env = dict(os.environ, HAP_LIBRARY_PATH=LIB, HAP_STRESS_CONFIG=json.dumps(config), **extra)
    for k, v in (
        ("HAP_STRESS_UNTIL_MS", until_ms),
        ("HAP_STRESS_START_AT_MS", start_at_ms),
        ("HAP_STRESS_MIN_VALIDITY_MS", min_validity_ms),
        ("HAP_STRESS_PAUSE_MS", pause_ms),
    ):
        if v is not None:
            env[k] = str(v)
    env.update(extra_env or {})
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def summary_of(proc, timeout):
    """The worker's summary dict, or one describing how it failed to give one."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        return {"calls": 1, "ok": 0, "errors": {"DRIVER_TIMEOUT": 1}, "messages": [f"no exit in {timeout}s"]}
    for line in reversed((out or "").strip().splitlines()):
        try:
            return json.loads(line)
        except ValueError:
            continue
    return {
        "calls": 1,
        "ok": 0,
        "errors": {f"NO_SUMMARY(rc={proc.returncode})": 1},
        "messages": [(err or "").strip()[-240:]],
    }
