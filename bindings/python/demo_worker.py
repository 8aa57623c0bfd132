#!/usr/bin/env python3
"""README demo worker: one resolve through the Python binding, one JSON line on stdout.

    HAP_DEMO_CONFIG='{"pool_path": ...}' [HAP_DEMO_START_AT_MS=<epoch ms>] \
        python3 bindings/python/demo_worker.py

Works with the installed package, or straight from the checkout with HAP_LIBRARY_PATH set
(this file's folder holds the `hap_oauth` source package).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time


def main() -> int:
    pid = os.getpid()
    try:
        import hap_oauth as hap
    except ImportError as exc:
        print(
            json.dumps({"lang": "python", "pid": pid, "error": "IMPORT_ERROR", "message": str(exc)})
        )
        return 1
    try:
        config = json.loads(os.environ.get("HAP_DEMO_CONFIG", "{}"))
    except ValueError as exc:
        print(
            json.dumps(
                {
                    "lang": "python",
                    "pid": pid,
                    "error": "HAP_STATUS_INVALID_ARGUMENT",
                    "message": f"HAP_DEMO_CONFIG is not JSON: {exc}",
                }
            )
        )
        return 1
    start_at_ms = os.environ.get("HAP_DEMO_START_AT_MS")
    try:
        with hap.Pool(config) as pool:
            if start_at_ms:
                delay = int(start_at_ms) / 1000.0 - time.time()
                if delay > 0:
                    time.sleep(delay)
            token = pool.resolve_token()
    except hap.HapError as exc:
        print(json.dumps({"lang": "python", "pid": pid, "error": exc.name, "message": str(exc)}))
        return 1
    print(
        json.dumps(
            {
                "lang": "python",
                "pid": pid,
                "credential_id": token.credential_id,
                "refreshed": token.refreshed,
                "token_sha256": hashlib.sha256(token.access_token.encode("utf-8")).hexdigest()[:12],
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
