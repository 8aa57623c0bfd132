#!/usr/bin/env python3
"""One process of the hap side of the race (bench/race.py), through the Python binding.

    HAP_BENCH_CONFIG='{"pool_path": ...}' HAP_LIBRARY_PATH=... \
        PYTHONPATH=bindings/python python3 bench/hap_race_worker.py

Same protocol as bench/hermes_worker.py: print {"ready": pid} after the imports, read the
start instant (epoch ms) from stdin, sleep until then, open the pool and resolve once (the
pool is opened after the start, as Hermes' load_pool() reads its files after the start), and
print one JSON line {"tool": "hap-python", "pid", "ok", "t_done_ms", "refreshed",
"token_sha256", "expires_at_ms", "error"}. The token itself is never printed.
"""

import hashlib
import json
import os
import sys
import time

import hap_oauth as hap


def main():
    pid = os.getpid()
    config = json.loads(os.environ["HAP_BENCH_CONFIG"])
    print(json.dumps({"ready": pid}), flush=True)
    start_at_ms = int(sys.stdin.readline())
    delay = start_at_ms / 1000.0 - time.time()
    if delay > 0:
        time.sleep(delay)
    out = {"tool": "hap-python", "pid": pid}
    try:
        with hap.Pool(config) as pool:
            token = pool.resolve_token()
    except hap.HapError as exc:
        out.update(ok=False, t_done_ms=int(time.time() * 1000), error=exc.name)
        print(json.dumps(out), flush=True)
        return 1
    out["t_done_ms"] = int(time.time() * 1000)
    out["ok"] = True
    out["refreshed"] = token.refreshed
    out["token_sha256"] = hashlib.sha256(token.access_token.encode()).hexdigest()[:12]
    out["expires_at_ms"] = token.expires_at_ms
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
