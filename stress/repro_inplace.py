#!/usr/bin/env python3
"""Reproduction (finding 2 of README.md): a credentials file caught half-written by a writer
that truncates and rewrites in place makes resolve fail with STORE_CORRUPT, although the
token the pool already holds is valid for another hour.

Expected: the cached, still-valid token is served (or the read is retried a few ms later).
Exit status 1 while it reproduces. Needs PYTHONPATH-free access to bindings/python (added
below) and target/release/libhap.so.
"""

import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common

sys.path.insert(0, os.path.join(common.REPO, "bindings/python"))
os.environ.setdefault("HAP_LIBRARY_PATH", common.LIB)
import hap_oauth as hap


def main():
    home = tempfile.mkdtemp(prefix="hap-repro-")
    creds = os.path.join(home, "claude/.credentials.json")
    common.write_creds(creds, "sk-ant-oat01-fake-a1", "sk-ant-ort01-fake-r1", common.now_ms() + 3_600_000)
    raw = json.dumps(
        common.creds_doc("sk-ant-oat01-fake-a1", "sk-ant-ort01-fake-r1", common.now_ms() + 3_600_000),
        indent=2,
    ).encode()
    pool = hap.Pool(
        {
            "pool_path": f"{home}/hermes/auth.json",
            "credentials_path": creds,
            "token_urls": ["http://127.0.0.1:9/v1/oauth/token"],
        }
    )
    print("1. resolve:", pool.resolve_token().credential_id)
    failed = None
    with open(creds, "r+b") as f:  # the outside writer, half-way through its write
        f.truncate(0)
        f.write(raw[: len(raw) // 2])
        f.flush()
        time.sleep(0.01)
        try:
            print("2. resolve during the write:", pool.resolve_token().credential_id)
        except hap.HapError as e:
            failed = e.name
            print("2. resolve during the write:", e.name)
        f.write(raw[len(raw) // 2 :])
    print("3. resolve after it:", pool.resolve_token().credential_id)
    pool.close()
    print("REPRODUCED" if failed else "NOT REPRODUCED (fixed)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
