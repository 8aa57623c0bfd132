#!/usr/bin/env python3
"""`hap token` on a valid login, wall time per run, beside `cat` of the same file (the floor).

    python3 bench/cli_token.py [--runs 101] [--hap target/release/hap]

A temporary HOME holds a valid Claude Code login (~/.claude/.credentials.json, 8 h left)
and, for the second case, a Hermes directory whose auth.json already has the adopted row
(one warm-up `hap token` writes it). Each measured run is one process start to exit, timed
from here with the same subprocess call for every command, so process creation is in every
figure and `cat ~/.claude/.credentials.json` is the floor no command can beat. The commands
run interleaved (cat, hap, hap with Hermes, cat, ...) so load drifts hit all of them alike.
Prints median, p90 and min in ms per command; exits 1 if a `hap token` run fails. No token
is printed. Build first: `cargo build --release --bin hap` (run here when --hap is missing).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def quantile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=101, help="measured runs per command (>= 50)")
    ap.add_argument("--hap", default=str(REPO / "target" / "release" / "hap"))
    args = ap.parse_args()
    hap = Path(args.hap)
    if not hap.exists():
        cmd = ["cargo", "build", "--release", "--bin", "hap"]
        print(f"{hap} is missing: running {' '.join(cmd)}", file=sys.stderr)
        subprocess.run(cmd, cwd=REPO, check=True)

    with tempfile.TemporaryDirectory(prefix="hap-cli-token-") as tmp:
        bare, hermes = Path(tmp) / "bare", Path(tmp) / "hermes"
        for home in (bare, hermes):
            creds = home / ".claude" / ".credentials.json"
            creds.parent.mkdir(parents=True, mode=0o700)
            creds.write_text(
                json.dumps(
                    {
                        "claudeAiOauth": {
                            "accessToken": "sk-ant-oat01-fake-bench",
                            "refreshToken": "sk-ant-ort01-fake-bench",
                            "expiresAt": int(time.time() * 1000) + 8 * 3_600_000,
                            "scopes": ["user:inference", "user:profile"],
                            "subscriptionType": "max",
                        }
                    }
                )
            )
            creds.chmod(0o600)
        (hermes / ".hermes").mkdir(mode=0o700)

        def env(home: Path) -> dict[str, str]:
            # Loopback token URL: a valid login makes no request, and a bug must not reach
            # the real endpoint.
            return {"HOME": str(home), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}

        token_url = "http://127.0.0.1:9/v1/oauth/token"
        commands = {
            "cat ~/.claude/.credentials.json": (
                ["cat", str(bare / ".claude" / ".credentials.json")],
                env(bare),
            ),
            "hap token (no ~/.hermes)": ([str(hap), "token", "--token-url", token_url], env(bare)),
            "hap token (~/.hermes/auth.json)": (
                [str(hap), "token", "--token-url", token_url],
                env(hermes),
            ),
        }
        # Warm-up: page cache, and the adopted row written into ~/.hermes/auth.json.
        for argv, e in commands.values():
            subprocess.run(argv, env=e, stdout=subprocess.DEVNULL, check=True)
        assert (hermes / ".hermes" / "auth.json").exists()
        if (bare / ".hermes").exists():
            print("note: this hap created ~/.hermes (built before issue 10)", file=sys.stderr)

        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.runs):
            for name, (argv, e) in commands.items():
                t0 = time.perf_counter_ns()
                r = subprocess.run(argv, env=e, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                dt = (time.perf_counter_ns() - t0) / 1e6
                if r.returncode != 0:
                    print(f"{name} failed: {r.stderr.decode()[-500:]}", file=sys.stderr)
                    return 1
                times[name].append(dt)

    print(f"{args.runs} runs each, interleaved; wall time per process in ms")
    print(f"{'command':34} {'median':>7} {'p90':>7} {'min':>7}")
    for name, xs in times.items():
        print(f"{name:34} {statistics.median(xs):7.2f} {quantile(xs, 0.9):7.2f} {min(xs):7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
