#!/usr/bin/env python3
"""The Python worker of the stress suite (through bindings/python).

Resolves repeatedly until HAP_STRESS_UNTIL_MS (once when unset) and prints one summary JSON
line, the format every stress worker shares. Environment: HAP_STRESS_CONFIG,
HAP_STRESS_START_AT_MS, HAP_STRESS_UNTIL_MS, HAP_STRESS_MIN_VALIDITY_MS,
HAP_STRESS_PAUSE_MS (mean pause between resolves, default 20). Never prints a token.
Run with PYTHONPATH=bindings/python and HAP_LIBRARY_PATH set.
"""

import hashlib
import json
import os
import random
import sys
import time


def now_ms():
    return int(time.time() * 1000)


def main():
    s = {
        "lang": "python",
        "pid": os.getpid(),
        "calls": 0,
        "ok": 0,
        "refreshed": 0,
        "token_changes": 0,
        "expired_served": 0,
        "max_call_ms": 0,
        "total_call_ms": 0,
        "errors": {},
        "messages": [],
    }

    def note(name, msg):
        s["errors"][name] = s["errors"].get(name, 0) + 1
        if len(s["messages"]) < 5:
            s["messages"].append(f"{name}: {msg}"[:240])

    env = os.environ
    until = int(env.get("HAP_STRESS_UNTIL_MS") or 0)
    pause = int(env.get("HAP_STRESS_PAUSE_MS") or 20)
    mv = env.get("HAP_STRESS_MIN_VALIDITY_MS")
    kwargs = {"min_validity_ms": int(mv)} if mv else {}
    try:
        import hap_oauth as hap

        pool = hap.Pool(json.loads(env["HAP_STRESS_CONFIG"]))
    except Exception as exc:
        s["calls"] += 1
        note(getattr(exc, "name", type(exc).__name__), str(exc))
        print(json.dumps(s), flush=True)
        return 1
    start = int(env.get("HAP_STRESS_START_AT_MS") or 0)
    if start > now_ms():
        time.sleep((start - now_ms()) / 1000)
    last = None
    while True:
        t0 = time.monotonic()
        try:
            tok = pool.resolve_token(**kwargs)
        except hap.HapError as exc:
            tok = None
            note(exc.name, str(exc))
        dt = int((time.monotonic() - t0) * 1000)
        s["calls"] += 1
        s["total_call_ms"] += dt
        s["max_call_ms"] = max(s["max_call_ms"], dt)
        if tok is not None:
            s["ok"] += 1
            s["refreshed"] += bool(tok.refreshed)
            if tok.expires_at_ms is not None and tok.expires_at_ms <= now_ms():
                s["expired_served"] += 1
            fp = hashlib.sha256(tok.access_token.encode()).hexdigest()[:16]
            if last is not None and fp != last:
                s["token_changes"] += 1
            last = fp
        if not until or now_ms() >= until:
            break
        time.sleep(random.uniform(0, 2 * pause) / 1000)
    pool.close()
    print(json.dumps(s), flush=True)
    return 0 if s["ok"] == s["calls"] else 1


if __name__ == "__main__":
    sys.exit(main())
