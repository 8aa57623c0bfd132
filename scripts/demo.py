#!/usr/bin/env python3
"""The README demo: many processes in four languages race one expired Claude Code login.

Starts the fake token server on 127.0.0.1, writes an expired credentials file into a
temporary home, gives every process its own Hermes profile pool file, starts them all at
the same instant, and prints how many refresh POSTs the server saw (the goal: 1) and
whether every process got the same new token. Run it through `scripts/demo`, which builds
what it needs first.
"""

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIB = os.environ.get("HAP_LIBRARY_PATH", os.path.join(REPO, "target/release/libhap.so"))
HAP_CLI = os.path.join(REPO, "target/release/hap")


def workers(per_lang):
    env_py = {"PYTHONPATH": os.path.join(REPO, "bindings/python")}
    langs = {
        "rust": ([os.path.join(REPO, "target/release/examples/hap_worker")], {}),
        "python": ([sys.executable, os.path.join(REPO, "bindings/python/demo_worker.py")], env_py),
        "node": (["node", os.path.join(REPO, "bindings/node/demo_worker.js")], {}),
        "go": ([os.path.join(REPO, "target/demo/hap-demo-worker")], {}),
    }
    for lang, (cmd, extra) in langs.items():
        exe = cmd[0] if len(cmd) == 1 else cmd[1]
        if not os.path.exists(exe):
            print(f"  (skipping {lang}: {os.path.relpath(exe, REPO)} not built)")
            continue
        for _ in range(per_lang):
            yield lang, cmd, extra


def show_status(home, url, title):
    if not os.path.exists(HAP_CLI):
        return
    print(f"\n$ hap status   # {title}")
    subprocess.run(
        [HAP_CLI, "--pool", os.path.join(home, "hermes/auth.json"),
         "--credentials", os.path.join(home, "claude/.credentials.json"),
         "--token-url", url, "status"],
        check=False,
    )


def main():
    per_lang = int(os.environ.get("HAP_DEMO_PER_LANG", "3"))
    server = subprocess.Popen(
        [sys.executable, os.path.join(REPO, "testing/fake_token_server.py"), "--exit-on-stdin-eof"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    base = server.stdout.readline().strip()
    url = base + "/v1/oauth/token"
    home = tempfile.mkdtemp(prefix="hap-demo-")
    creds = os.path.join(home, "claude/.credentials.json")
    os.makedirs(os.path.dirname(creds), mode=0o700)
    with open(creds, "w") as f:
        json.dump({"claudeAiOauth": {
            "accessToken": "sk-ant-oat01-demo-expired", "refreshToken": "sk-ant-ort01-demo-1",
            "expiresAt": int(time.time() * 1000) - 60_000, "scopes": ["user:inference"],
            "subscriptionType": "max", "rateLimitTier": "default_claude_max_20x"}}, f, indent=2)
    # Slow the one refresh down a little, so the race is a real one.
    req = urllib.request.Request(base + "/_admin/script", method="POST",
                                 data=json.dumps({"faults": [{"delay_ms": 300}]}).encode())
    urllib.request.urlopen(req).read()

    print(f"fake token server: {base}\nhome: {home}\n"
          "credentials file: expired access token, one single-use refresh token")
    show_status(home, url, "before: the token has expired")

    start_at = int(time.time() * 1000) + 2500
    procs = []
    for i, (lang, cmd, extra) in enumerate(workers(per_lang)):
        profile = "" if i == 0 else f"profiles/{lang}{i}/"
        cfg = {"pool_path": os.path.join(home, f"hermes/{profile}auth.json"),
               "credentials_path": creds, "token_urls": [url], "lock_timeout_ms": 20000}
        env = dict(os.environ, HAP_LIBRARY_PATH=LIB, HAP_DEMO_CONFIG=json.dumps(cfg),
                   HAP_DEMO_START_AT_MS=str(start_at), **extra)
        procs.append((lang, subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE,
                                             stderr=subprocess.PIPE, text=True)))
    print(f"\nstarted {len(procs)} processes "
          f"({', '.join(f'{n} {lang}' for lang, n in Counter(lang for lang, _ in procs).items())}), "
          "each with its own Hermes profile, all resolving at the same instant...\n")

    results, failed = [], 0
    for lang, p in procs:
        out, err = p.communicate(timeout=120)
        line = (out.strip().splitlines() or ["{}"])[-1]
        try:
            r = json.loads(line)
        except ValueError:
            r = {"lang": lang, "error": "no output", "message": err.strip()[-200:]}
        results.append(r)
        if "error" in r or p.returncode != 0:
            failed += 1
        mark = "refreshed" if r.get("refreshed") else "shared   "
        print(f"  {r.get('lang', lang):6} pid {r.get('pid', '?'):>7}  "
              + (f"{mark}  token sha256 {r['token_sha256']}" if "token_sha256" in r
                 else f"ERROR {r.get('error')}: {r.get('message')}"))

    stats = json.load(urllib.request.urlopen(base + "/_admin/stats"))
    tokens = {r.get("token_sha256") for r in results if "token_sha256" in r}
    show_status(home, url, "after: one rotation, shared by everyone")
    print(f"\nrefresh POSTs seen by the token server: {stats['posts']}"
          f"  (invalid_grant: {stats['invalid_grant']})")
    print(f"processes that got a token: {len(results) - failed} of {len(results)}; "
          f"distinct tokens: {len(tokens)}")
    kept = json.load(open(creds))["claudeAiOauth"]
    print(f"credentials file still has subscriptionType={kept.get('subscriptionType')!r}, "
          f"rateLimitTier={kept.get('rateLimitTier')!r}")
    server.stdin.close()
    server.wait(timeout=10)
    ok = stats["posts"] == 1 and failed == 0 and len(tokens) == 1
    print("\nOK: exactly one POST, every process got the same new token" if ok else "\nFAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
