#!/usr/bin/env python3
"""One process of the Hermes Agent side of the race (bench/race.py), run by a Python that has
`hermes-agent` installed (the throwaway venv /tmp/hermes-venv of bench/run_all.sh, or the
venv bindings/python/hermes_plugin/ci.sh caches for the plugin's tests).

Environment (set by bench/race.py): HOME (holds .claude/.credentials.json), HERMES_HOME (this
process's profile: auth.json, config.yaml with `model.provider: anthropic`), and
BENCH_FAKE_BASE, the fake token server's base URL.

How Hermes is pointed at the fake server: Hermes 0.19 posts the refresh from
`agent.anthropic_adapter.refresh_anthropic_oauth_pure`, whose token URLs are a list literal
inside the function (`https://platform.claude.com/v1/oauth/token`, then
`https://console.anthropic.com/v1/oauth/token`), so there is no constant to patch. The
function calls `urllib.request.urlopen(req, timeout=10)`; this driver wraps that one
attribute and rewrites the scheme and host of those two URLs only:
`https://platform.claude.com/...` -> `<fake base>/...` (the fake token endpoint) and
`https://console.anthropic.com/...` -> `<fake base>/console.anthropic.com/...` (the fake
server answers 404 there; Hermes' own source says the console host now 404s). Nothing else
of Hermes is touched: the request body, headers, its retry and its file writes are its own.

With BENCH_LOAD_PLUGINS=1 the worker loads Hermes' plugins as its CLI does
(`hermes_cli.plugins.discover_plugins()`, which honours `plugins.enabled` in the profile's
config.yaml) before it reports ready: the `hermes-plugin` tool of bench/race.py. With
BENCH_FAKE_HERMES_VERSION=X, `importlib.metadata.version("hermes-agent")` answers X (an
unknown Hermes, simulated: the plugin must stay out). The URL redirect above stays in place
either way, so a Hermes that POSTs by itself still reaches the fake server, never the network.

Protocol: after the imports, print `{"ready": pid}` and wait for one stdin line holding the
start instant (epoch ms); sleep until then; `load_pool("anthropic").select()`; print one
JSON line: {"tool": "hermes", "pid", "ok", "t_done_ms", "token_sha256", "expires_at_ms",
"posts_platform", "posts_console", "plugin_active", "error"}.
"""

import hashlib
import json
import os
import sys
import time
import urllib.request

BASE = os.environ["BENCH_FAKE_BASE"].rstrip("/")
_real_urlopen = urllib.request.urlopen
_posts = {"platform": 0, "console": 0}


def _redirecting_urlopen(req, *args, **kwargs):
    url = req.full_url if isinstance(req, urllib.request.Request) else str(req)
    for host, key, prefix in (
        ("https://platform.claude.com", "platform", BASE),
        ("https://console.anthropic.com", "console", BASE + "/console.anthropic.com"),
    ):
        if url.startswith(host + "/"):
            _posts[key] += 1
            new_url = prefix + url[len(host) :]
            if isinstance(req, urllib.request.Request):
                req.full_url = new_url
            else:
                req = new_url
            break
    return _real_urlopen(req, *args, **kwargs)


urllib.request.urlopen = _redirecting_urlopen

if os.environ.get("BENCH_FAKE_HERMES_VERSION"):
    import importlib.metadata

    _real_version = importlib.metadata.version

    def _version(name):
        if name == "hermes-agent":
            return os.environ["BENCH_FAKE_HERMES_VERSION"]
        return _real_version(name)

    importlib.metadata.version = _version

from agent.credential_pool import load_pool  # noqa: E402  (after the patch, on purpose)

if os.environ.get("BENCH_LOAD_PLUGINS") == "1":
    from hermes_cli.plugins import discover_plugins

    discover_plugins()


def _plugin_active():
    mod = sys.modules.get("hap_oauth_hermes")
    return bool(mod and mod._installed)


def main():
    pid = os.getpid()
    print(json.dumps({"ready": pid}), flush=True)
    start_at_ms = int(sys.stdin.readline())
    delay = start_at_ms / 1000.0 - time.time()
    if delay > 0:
        time.sleep(delay)
    out = {"tool": "hermes", "pid": pid}
    try:
        entry = load_pool("anthropic").select()
    except Exception as exc:  # a crash of Hermes' own code is a result, not a driver bug
        entry = None
        out["error"] = f"{type(exc).__name__}: {exc}"[:300]
    out["t_done_ms"] = int(time.time() * 1000)
    token = getattr(entry, "access_token", None) if entry is not None else None
    expires = getattr(entry, "expires_at_ms", None) if entry is not None else None
    # A token counts only when it is valid: an unexpired access token (the expired one on
    # disk at the start does not count).
    out["ok"] = bool(token) and (expires is None or int(expires) > out["t_done_ms"])
    out["token_sha256"] = hashlib.sha256(token.encode()).hexdigest()[:12] if token else None
    out["expires_at_ms"] = expires
    out["posts_platform"] = _posts["platform"]
    out["posts_console"] = _posts["console"]
    out["plugin_active"] = _plugin_active()
    if entry is None and "error" not in out:
        out["error"] = "select() returned None"
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
