#!/usr/bin/env python3
"""Reproduction (finding 1 of README.md): hap processes POST a refresh token that another hap
process has already seen refused with invalid_grant.

An outside writer (no lock) spends the credentials file's refresh token and has not written
its new pair yet. Five hap processes (each with its own profile pool file) need a refresh.
Expected: one hap POST of the spent token (the first process learns it is spent; the others
could read that from the journal and go straight to watching the store). Today: five.
Exit status 1 while it reproduces. Needs target/release/examples/hap_worker (cargo build
--release --examples).
"""

import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common

WORKER = os.path.join(common.REPO, "target/release/examples/hap_worker")


def main():
    server = common.FakeServer()
    home = tempfile.mkdtemp(prefix="hap-repro-")
    creds = os.path.join(home, "claude/.credentials.json")
    common.write_creds(creds, "sk-ant-oat01-fake-a1", "sk-ant-ort01-fake-r1", common.now_ms() - 1000)
    status, _ = server.post_refresh("sk-ant-ort01-fake-r1", "outside-writer")  # spent, not written
    assert status == 200
    procs = [
        subprocess.Popen(
            [
                WORKER,
                json.dumps(
                    {
                        "pool_path": f"{home}/p{i}/auth.json",
                        "credentials_path": creds,
                        "token_urls": [server.token_url],
                    }
                ),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(5)
    ]
    t0 = time.time()
    for p in procs:
        print(" ", p.communicate()[0].strip()[:110])
    log = server.stats()["log"]
    server.close()
    hap_posts = [e for e in log if (e["user_agent"] or "").startswith("hap/")]
    print(
        f"hap POSTs of the spent token: {len(hap_posts)} (statuses {[e['status'] for e in hap_posts]}), "
        f"expected 1; {time.time() - t0:.1f}s"
    )
    print("REPRODUCED" if len(hap_posts) > 1 else "NOT REPRODUCED (fixed)")
    return 1 if len(hap_posts) > 1 else 0


if __name__ == "__main__":
    sys.exit(main())
