#!/usr/bin/env python3
"""Median per-call cost of a hot ``Pool.resolve_token()`` (a valid token: no lock, no POST).

    python3 bindings/python/bench/bench_resolve.py [--number 20000] [--repeat 9]
        [--hermes-python /tmp/hermes-venv/bin/python]

Stores are real files in a temp dir (a Claude Code credentials file valid for hours and the
Hermes pool file hap seeds from it). Prints three medians: the raw ctypes call (result string
taken and freed, not parsed), the full ``resolve_token`` (JSON parsed into a ``hap.Token``),
and, with ``--hermes-python``, Hermes Agent's own ``load_pool("anthropic").select()`` on the
same files in that interpreter (a venv with ``pip install hermes-agent``; never run in CI).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(1, str(HERE.parent))  # the checkout's package when hap is not installed

import hap_oauth as hap  # noqa: E402
from hap_oauth import _ffi  # noqa: E402

HERMES_SNIPPET = r"""
import json, statistics, sys, timeit
from agent.credential_pool import load_pool
number, repeat = int(sys.argv[1]), int(sys.argv[2])
entry = load_pool("anthropic").select()
assert entry is not None, "hermes selected no anthropic credential"
held = load_pool("anthropic")
def median(fn, n):
    return statistics.median(t / n for t in timeit.repeat(fn, number=n, repeat=repeat))
print(json.dumps({
    "load_select_s": median(lambda: load_pool("anthropic").select(), max(1, number // 20)),
    "select_s": median(held.select, number),
    "source": entry.source,
}))
"""


def write_stores(root: Path) -> dict[str, object]:
    creds = root / "claude" / ".credentials.json"
    creds.parent.mkdir(parents=True)
    creds.write_text(
        json.dumps(
            {
                "claudeAiOauth": {
                    "accessToken": "sk-ant-oat01-fake-bench",
                    "refreshToken": "sk-ant-ort01-fake-bench",
                    "expiresAt": int(time.time() * 1000) + 8 * 3_600_000,
                    "scopes": ["user:inference"],
                    "subscriptionType": "max",
                    "rateLimitTier": "default_claude_max_20x",
                }
            }
        )
    )
    os.chmod(creds, 0o600)
    return {
        "pool_path": str(root / "hermes" / "auth.json"),
        "credentials_path": str(creds),
        # Nothing listens on the discard port: a POST would fail loudly, and none is expected.
        "token_urls": ["http://127.0.0.1:9/v1/oauth/token"],
    }


def median_per_call(fn: object, number: int, repeat: int) -> float:
    runs = timeit.repeat(fn, number=number, repeat=repeat)  # type: ignore[arg-type]
    return statistics.median(t / number for t in runs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--number", type=int, default=20_000, help="calls per timing run")
    parser.add_argument("--repeat", type=int, default=9, help="timing runs (median taken)")
    parser.add_argument("--hermes-python", help="python of a venv with hermes-agent installed")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="hap-bench-") as tmp:
        root = Path(tmp)
        config = write_stores(root)
        print(f"hap {hap.__version__}, {hap.library_version()}, {hap.library_path()}")
        print(f"python {sys.version.split()[0]}; {args.repeat} runs x {args.number} calls")
        with hap.Pool(config) as pool:
            token = pool.resolve_token()  # seeds the pool file
            assert not token.refreshed

            handle = pool._handle

            def raw() -> None:
                out = ctypes.c_void_p()
                err = ctypes.c_void_p()
                if _ffi.hap_resolve_token(handle, None, ctypes.byref(out), ctypes.byref(err)):
                    raise RuntimeError(_ffi.take_string(err))
                _ffi.take_string(out)

            raw_s = median_per_call(raw, args.number, args.repeat)
            full_s = median_per_call(pool.resolve_token, args.number, args.repeat)
            counters = pool.status()["counters"]
        print(f"raw ctypes hap_resolve_token + hap_free : {raw_s * 1e6:8.2f} us/call (median)")
        print(f"hap.Pool.resolve_token() -> hap.Token   : {full_s * 1e6:8.2f} us/call (median)")
        print(f"refresh POSTs during the run: {counters.get('refresh_posts')}")

        if args.hermes_python:
            env = dict(os.environ, HERMES_HOME=str(root / "hermes"))
            # Hermes reads Claude Code's file from ~/.claude only: point HOME at the bench dir.
            env["HOME"] = str(root)
            os.symlink(root / "claude", root / ".claude")
            # Hermes adopts Claude Code's login only once anthropic is the configured provider.
            (root / "hermes" / "config.yaml").write_text("model:\n  provider: anthropic\n")
            proc = subprocess.run(
                [args.hermes_python, "-c", HERMES_SNIPPET, str(args.number), str(args.repeat)],
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode != 0:
                print("hermes-agent load_pool('anthropic').select(): failed:")
                print(proc.stderr.strip()[-2000:])
                return 1
            hermes = json.loads(proc.stdout.strip().splitlines()[-1])
            print(
                "hermes load_pool('anthropic').select()   : "
                f"{hermes['load_select_s'] * 1e6:8.2f} us/call (median)"
            )
            print(
                "hermes pool.select() on a loaded pool    : "
                f"{hermes['select_s'] * 1e6:8.2f} us/call (median; source {hermes['source']})"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
