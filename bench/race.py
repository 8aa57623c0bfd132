#!/usr/bin/env python3
"""N processes, one expired Claude Code login, all asking for a token at the same instant.

    python3 bench/race.py [--tools hap-c,hap-python,hermes] [--n 1,8,32] [--reps 3]
        [--latency-ms 100] [--hermes-python /tmp/hermes-venv/bin/python] [--json OUT]

Every race gets a fresh fake token server (testing/fake_token_server.py) and a fresh temp
home laid out as a real machine with Hermes profiles:

    home/.claude/.credentials.json          one file, expired access token, one refresh token,
                                            plus subscriptionType, rateLimitTier, an unknown
                                            key inside claudeAiOauth and one at the top
    home/.hermes/profiles/p<i>/auth.json    one pool file per process (profile), holding an
                                            unknown top-level key; config.yaml selects
                                            anthropic (Hermes adopts Claude Code's login
                                            only then)

Tools: `hap-c` (bench/build/race_worker, the C ABI), `hap-python` (bench/hap_race_worker.py,
the Python binding), `hermes` (bench/hermes_worker.py in the hermes-agent venv:
`load_pool("anthropic").select()`), `hermes-plugin` (the same unmodified Hermes with the
hap-oauth-hermes plugin installed in that venv and enabled in each profile's config.yaml,
loaded by `discover_plugins()` as Hermes' CLI does; hap reads the fake server's URL from
HAP_CONFIG). Hermes' tools need --hermes-python. Each worker loads, reports ready, and
waits on stdin; when all N are ready the driver sends them one start instant. Every
token-endpoint POST is delayed by --latency-ms (a scripted `delay_ms` on the fake server),
standing in for the network round trip to the real endpoint.

Per race: wall time from the start instant until the last process has its answer, POSTs to
the token endpoint and `invalid_grant` answers (server counters), processes without a valid
token, distinct tokens handed out, whether the refresh token left in the credentials file
still works afterwards (one probe POST, made after the counters are read), keys dropped from
the credentials file and from the auth.json files, and whether every file still parses.
Prints one table (medians over --reps; counts as min..max) and exits 1 when a hap race broke
its promise (POSTs != 1, a process without a token, a dropped key or a dead session).

Builds what the hap tools need before the first race, saying each command it runs:
libhap (`HAP_LIBRARY_PATH` if set, else `cargo build --release --lib` when
target/release/libhap.so is missing) and bench/build/race_worker (`cc -O2 ... race_worker.c`
when missing or older than its source, hap.h or libhap; `HAP_BENCH_BUILD_DIR` puts it
elsewhere). bench/run_all.sh builds the same things first.
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
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
BUILD = Path(os.environ.get("HAP_BENCH_BUILD_DIR") or BENCH / "build")
TOOLS = ("hap-c", "hap-python", "hermes", "hermes-plugin")

CREDENTIALS = {
    "claudeAiOauth": {
        "accessToken": "sk-ant-oat01-fake-race-a0",
        "refreshToken": "sk-ant-ort01-fake-race-r0",
        "expiresAt": 0,  # set at write time: a minute ago
        "scopes": ["user:inference", "user:profile"],
        "subscriptionType": "max",
        "rateLimitTier": "default_claude_max_20x",
        "unknownInnerKey": {"keep": True},
    },
    "otherTool": {"keep": True},
}
AUTH_JSON = {"version": 1, "providers": {}, "otherTool": {"keep": True}}


def key_paths(obj: object, prefix: str = "") -> set[str]:
    """Every key path of a JSON object (lists are not descended into)."""
    out: set[str] = set()
    if isinstance(obj, dict):
        for k, v in obj.items():
            p = f"{prefix}.{k}" if prefix else k
            out.add(p)
            out |= key_paths(v, p)
    return out


def http_json(url: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="GET" if body is None else "POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def refresh_token_alive(token_url: str, refresh_token: str) -> bool:
    """One probe POST: does the refresh token left on disk still refresh?"""
    body = urllib.parse.urlencode(
        {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": "probe"}
    ).encode()
    try:
        with urllib.request.urlopen(urllib.request.Request(token_url, data=body), timeout=10):
            return True
    except urllib.error.HTTPError:
        return False


def run_build_step(cmd: list[str]) -> None:
    print(f"race.py: building: {' '.join(cmd)}", file=sys.stderr, flush=True)
    if subprocess.run(cmd, cwd=REPO).returncode != 0:
        raise SystemExit(f"race.py: build step failed: {' '.join(cmd)}")


def ensure_built(tools: list[str]) -> Path | None:
    """libhap and the C worker, built when missing or stale (run on its own, race.py died
    with a traceback about bench/build/race_worker). Returns libhap's path."""
    if not any(t.startswith("hap-") for t in tools):
        return None
    override = os.environ.get("HAP_LIBRARY_PATH")
    lib = Path(override) if override else REPO / "target" / "release" / "libhap.so"
    if not lib.is_file():
        if override:
            raise SystemExit(
                f"race.py: HAP_LIBRARY_PATH={override} does not exist; build it "
                "(cargo build --release --lib) or unset it"
            )
        run_build_step(["cargo", "build", "--release", "--lib"])
    if "hap-c" in tools:
        worker = BUILD / "race_worker"
        inputs = [BENCH / "race_worker.c", REPO / "include" / "hap.h", lib]
        stale = not worker.exists() or any(
            p.stat().st_mtime > worker.stat().st_mtime for p in inputs
        )
        if stale:
            BUILD.mkdir(parents=True, exist_ok=True)
            run_build_step(
                [
                    os.environ.get("CC", "cc"),
                    "-O2",
                    "-Wall",
                    "-Wextra",
                    "-Werror",
                    "-I",
                    str(REPO / "include"),
                    str(BENCH / "race_worker.c"),
                    "-L",
                    str(lib.parent),
                    "-lhap",
                    f"-Wl,-rpath,{lib.parent}",
                    "-o",
                    str(worker),
                ]
            )
    return lib


def worker_cmd(tool: str, hermes_python: str | None) -> list[str]:
    if tool == "hap-c":
        return [str(BUILD / "race_worker")]
    if tool == "hap-python":
        return [sys.executable, str(BENCH / "hap_race_worker.py")]
    if not hermes_python:
        raise SystemExit(f"--hermes-python is required for the {tool} tool")
    return [hermes_python, str(BENCH / "hermes_worker.py")]


def clean_env() -> dict[str, str]:
    """The caller's environment minus anything that could steer either tool elsewhere."""
    drop = ("HERMES_", "ANTHROPIC_", "CLAUDE_", "HAP_BENCH_", "HAP_DEMO_", "HAP_CONFIG", "BENCH_")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


def one_race(
    tool: str,
    n: int,
    latency_ms: int,
    hermes_python: str | None,
    lib: Path | None = None,
    *,
    plugin_enabled: bool = True,
    fake_hermes_version: str | None = None,
) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"hap-race-{tool}-{n}-") as tmp:
        home = Path(tmp) / "home"
        creds_path = home / ".claude" / ".credentials.json"
        creds_path.parent.mkdir(parents=True, mode=0o700)
        creds = json.loads(json.dumps(CREDENTIALS))
        creds["claudeAiOauth"]["expiresAt"] = int(time.time() * 1000) - 60_000
        creds_path.write_text(json.dumps(creds, indent=2))
        creds_path.chmod(0o600)
        profiles = []
        config_yaml = "model:\n  provider: anthropic\n"
        if tool == "hermes-plugin" and plugin_enabled:
            # What `hermes plugins enable hap-oauth` writes.
            config_yaml += "plugins:\n  enabled:\n  - hap-oauth\n"
        for i in range(n):
            prof = home / ".hermes" / "profiles" / f"p{i}"
            prof.mkdir(parents=True, mode=0o700)
            (prof / "config.yaml").write_text(config_yaml)
            (prof / "auth.json").write_text(json.dumps(AUTH_JSON, indent=2))
            (prof / "auth.json").chmod(0o600)
            profiles.append(prof)

        server = subprocess.Popen(
            [sys.executable, str(REPO / "testing" / "fake_token_server.py"), "--exit-on-stdin-eof"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        procs: list[subprocess.Popen] = []
        try:
            base = server.stdout.readline().strip()
            token_url = base + "/v1/oauth/token"
            if latency_ms:
                faults = [{"delay_ms": latency_ms}] * (6 * n + 8)
                http_json(base + "/_admin/script", {"faults": faults})
            cmd = worker_cmd(tool, hermes_python)
            # hap's configuration for the plugin: only what differs from its defaults.
            hap_config = Path(tmp) / "hap-config.json"
            hap_config.write_text(
                json.dumps(
                    {"token_urls": [token_url], "lock_timeout_ms": 30000, "http_timeout_ms": 10000}
                )
            )

            def run_round(round_profiles: list[Path]) -> tuple[int, list[dict]]:
                """Start one worker per profile, release them at one instant, collect."""
                procs.clear()
                for prof in round_profiles:
                    env = clean_env()
                    env["HOME"] = str(home)
                    if tool.startswith("hermes"):
                        env["HERMES_HOME"] = str(prof)
                        env["BENCH_FAKE_BASE"] = base
                    if tool == "hermes-plugin":
                        env["BENCH_LOAD_PLUGINS"] = "1"
                        env["HAP_CONFIG"] = str(hap_config)
                        if fake_hermes_version:
                            env["BENCH_FAKE_HERMES_VERSION"] = fake_hermes_version
                    else:
                        env["PYTHONPATH"] = str(REPO / "bindings" / "python")
                        if lib is not None:
                            env["HAP_LIBRARY_PATH"] = str(lib)
                        env["HAP_BENCH_CONFIG"] = json.dumps(
                            {
                                "pool_path": str(prof / "auth.json"),
                                "credentials_path": str(creds_path),
                                "token_urls": [token_url],
                                "lock_timeout_ms": 30000,
                                "http_timeout_ms": 10000,
                            }
                        )
                    procs.append(
                        subprocess.Popen(
                            cmd,
                            env=env,
                            stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE,
                            text=True,
                        )
                    )
                for p in procs:  # the barrier: everyone loaded
                    line = p.stdout.readline()
                    if '"ready"' not in line:
                        raise RuntimeError(
                            f"{tool} worker did not start: {p.stderr.read()[-2000:]}"
                        )
                start = int(time.time() * 1000) + 300
                for p in procs:
                    p.stdin.write(f"{start}\n")
                    p.stdin.close()
                    p.stdin = None  # communicate() below must not touch it again
                out_rows = []
                for p in procs:
                    out, err = p.communicate(timeout=180)
                    lines = [ln for ln in out.splitlines() if ln.strip()]
                    try:
                        out_rows.append(json.loads(lines[-1]))
                    except (IndexError, ValueError):
                        out_rows.append({"ok": False, "error": f"no output: {err.strip()[-300:]}"})
                return start, out_rows

            start_at, results = run_round(profiles)
            stats = http_json(base + "/_admin/stats")
            # The processes left without a token call once more, together (as the next
            # request of a long-running agent would): do they recover, at what cost?
            retry_profiles = [prof for prof, r in zip(profiles, results) if not r.get("ok")]
            second: dict = {"callers": len(retry_profiles), "recovered": 0, "posts": 0}
            if retry_profiles:
                _, again = run_round(retry_profiles)
                stats2 = http_json(base + "/_admin/stats")
                second.update(
                    recovered=sum(1 for r in again if r.get("ok")),
                    posts=stats2["posts"] - stats["posts"],
                    invalid_grant=stats2["invalid_grant"] - stats["invalid_grant"],
                )
            # The files after the race.
            parse_ok = True
            try:
                final_creds = json.loads(creds_path.read_text())
            except ValueError:
                final_creds, parse_ok = {}, False
            dropped_creds = sorted(key_paths(creds) - key_paths(final_creds))
            dropped_auth: set[str] = set()
            token_copies = 0
            for prof in profiles:
                try:
                    text = (prof / "auth.json").read_text()
                    auth = json.loads(text)
                except (OSError, ValueError):
                    parse_ok = False
                    continue
                dropped_auth |= key_paths(AUTH_JSON) - key_paths(auth)
                token_copies += "sk-ant-ort01-" in text or "sk-ant-oat01-" in text
            oauth = final_creds.get("claudeAiOauth", {})
            alive = bool(oauth.get("refreshToken")) and refresh_token_alive(
                token_url, oauth["refreshToken"]
            )
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
            server.stdin.close()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()

    ok = [r for r in results if r.get("ok")]
    tokens = {r.get("token_sha256") or r.get("token_hash") for r in ok}
    done = [r["t_done_ms"] for r in results if "t_done_ms" in r]
    errors = sorted({r["error"] for r in results if r.get("error")})
    return {
        "plugin_active": sum(1 for r in results if r.get("plugin_active")),
        "hermes_own_posts": sum(r.get("posts_platform", 0) for r in results),
        "tool": tool,
        "n": n,
        "wall_ms": (max(done) - start_at) if done else None,
        "done_offsets_ms": sorted(t - start_at for t in done),
        "posts": stats["posts"],
        "invalid_grant": stats["invalid_grant"],
        "console_404_posts": sum(r.get("posts_console", 0) for r in results),
        "no_token": n - len(ok),
        "distinct_tokens": len(tokens),
        "session_alive_after": alive,
        "dropped_credentials_keys": dropped_creds,
        "dropped_auth_json_keys": sorted(dropped_auth),
        "auth_json_with_token_copy": token_copies,
        "files_parse": parse_ok,
        "errors": errors,
        "second_call": second,
    }


def span(xs: list) -> str:
    lo, hi = min(xs), max(xs)
    return f"{lo}" if lo == hi else f"{lo}..{hi}"


def summarize(runs: list[dict]) -> dict:
    walls = [r["wall_ms"] for r in runs if r["wall_ms"] is not None]
    union = lambda k: sorted({x for r in runs for x in r[k]})  # noqa: E731
    return {
        "tool": runs[0]["tool"],
        "n": runs[0]["n"],
        "reps": len(runs),
        "wall_ms_median": statistics.median(walls) if walls else None,
        "posts": span([r["posts"] for r in runs]),
        "invalid_grant": span([r["invalid_grant"] for r in runs]),
        "console_404_posts": span([r["console_404_posts"] for r in runs]),
        "no_token": span([r["no_token"] for r in runs]),
        "distinct_tokens": span([r["distinct_tokens"] for r in runs]),
        "session_alive_after": f"{sum(r['session_alive_after'] for r in runs)}/{len(runs)}",
        "dropped_credentials_keys": union("dropped_credentials_keys"),
        "dropped_auth_json_keys": union("dropped_auth_json_keys"),
        "auth_json_with_token_copy": span([r["auth_json_with_token_copy"] for r in runs]),
        "files_parse": all(r["files_parse"] for r in runs),
        "errors": union("errors"),
        "second_call_recovered": span([r["second_call"]["recovered"] for r in runs]),
        "second_call_callers": span([r["second_call"]["callers"] for r in runs]),
        "second_call_posts": span([r["second_call"]["posts"] for r in runs]),
        "plugin_active": span([r["plugin_active"] for r in runs]),
        "hermes_own_posts": span([r["hermes_own_posts"] for r in runs]),
    }


def print_table(rows: list[dict]) -> None:
    cols = [
        ("tool", "tool", 10),
        ("n", "N", 3),
        ("wall_ms_median", "wall ms", 8),
        ("posts", "POSTs", 6),
        ("invalid_grant", "inv_grant", 9),
        ("no_token", "no token", 8),
        ("distinct_tokens", "tokens", 6),
        ("session_alive_after", "alive", 5),
        ("auth_json_with_token_copy", "tok copies", 10),
        ("second_call_recovered", "2nd ok", 6),
        ("second_call_posts", "2nd POSTs", 9),
        ("hermes_own_posts", "Hermes' own POSTs", 17),
    ]
    print("  ".join(h.rjust(w) for _, h, w in cols) + "  dropped keys (credentials | auth.json)")
    for r in rows:
        cells = []
        for k, _, w in cols:
            v = r[k]
            cells.append((f"{v:.0f}" if isinstance(v, float) else str(v)).rjust(w))
        dropped = (
            f"{', '.join(r['dropped_credentials_keys']) or '-'} | "
            f"{', '.join(r['dropped_auth_json_keys']) or '-'}"
        )
        extra = f"  errors: {', '.join(r['errors'])}" if r["errors"] else ""
        print("  ".join(cells) + "  " + dropped + extra)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tools", default="hap-c,hap-python,hermes")
    ap.add_argument("--n", default="1,8,32")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--latency-ms", type=int, default=100)
    ap.add_argument("--hermes-python")
    ap.add_argument("--json", help="write every race and the summary here")
    args = ap.parse_args()
    tools = [t for t in args.tools.split(",") if t]
    for t in tools:
        if t not in TOOLS:
            ap.error(f"unknown tool {t!r}")
    ns = [int(x) for x in args.n.split(",")]
    lib = ensure_built(tools)

    runs: list[dict] = []
    summary: list[dict] = []
    for n in ns:
        for tool in tools:
            group = []
            for rep in range(args.reps):
                r = one_race(tool, n, args.latency_ms, args.hermes_python, lib)
                print(
                    f"  race {tool} N={n} rep {rep + 1}: {r['wall_ms']} ms, POSTs {r['posts']}, "
                    f"invalid_grant {r['invalid_grant']}, no token {r['no_token']}",
                    file=sys.stderr,
                    flush=True,
                )
                group.append(r)
            runs.extend(group)
            summary.append(summarize(group))
    print(
        f"race: one expired login, N processes with separate profiles, start at one instant; "
        f"{args.reps} reps, {args.latency_ms} ms per token POST; wall = median"
    )
    print_table(summary)
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": runs, "summary": summary}, indent=2))
    broken = [
        r
        for r in runs
        if r["tool"] != "hermes"
        and (
            (r["tool"] == "hermes-plugin" and r["plugin_active"] != r["n"])
            or r["posts"] != 1
            or r["invalid_grant"]
            or r["no_token"]
            or r["dropped_credentials_keys"]
            or r["dropped_auth_json_keys"]
            or not r["session_alive_after"]
            or not r["files_parse"]
        )
    ]
    for r in broken:
        print(f"FAILED: hap race broke its promise: {json.dumps(r)}", file=sys.stderr)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
