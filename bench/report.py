#!/usr/bin/env python3
"""Collate the raw outputs of one bench/run_all.sh run into one table (Markdown).

    python3 bench/report.py RESULTS_DIR

Reads what run_all.sh wrote into RESULTS_DIR (machine.txt, criterion estimates copied as
criterion_*.json, c_hot.json, python.txt, node.json, go.txt, race.json) and prints the
tables; exits 1 when an expected figure is missing.
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from pathlib import Path


def us(ns: float) -> str:
    return f"{ns / 1000:.2f} µs"


def main() -> int:
    d = Path(sys.argv[1])
    missing: list[str] = []
    rows: list[tuple[str, str, float | None]] = []  # (what, how, ns per call)

    def criterion(name: str) -> float | None:
        p = d / f"criterion_{name}.json"
        if not p.exists():
            missing.append(str(p))
            return None
        return json.loads(p.read_text())["median"]["point_estimate"]

    rows.append(("Rust API `Pool::resolve`", "criterion median", criterion("hot_resolve_rust_api")))
    rows.append(("C ABI from Rust (criterion)", "criterion median", criterion("hot_resolve_c_abi")))

    c = d / "c_hot.json"
    if c.exists():
        cj = json.loads(c.read_text())
        rows.append(
            (
                "C `hap_resolve_token` + `hap_free` (gcc -O2)",
                f"median of {cj['batches']} batches x {cj['calls']}",
                cj["median_ns"],
            )
        )
    else:
        missing.append(str(c))

    py = d / "python.txt"
    hermes_load = hermes_held = None
    if py.exists():
        text = py.read_text()

        def grab(label: str) -> float | None:
            m = re.search(re.escape(label) + r"\s*:\s*([0-9.]+) us/call", text)
            if not m:
                missing.append(f"python.txt: {label}")
                return None
            return float(m.group(1)) * 1000

        runs = re.search(r"(\d+) runs x (\d+) calls", text)
        how = f"median of {runs.group(1)} runs x {runs.group(2)}" if runs else "median"
        rows.append(
            (
                "Python raw ctypes call + `hap_free`",
                how,
                grab("raw ctypes hap_resolve_token + hap_free"),
            )
        )
        rows.append(
            (
                "Python `hap.Pool.resolve_token()`",
                how,
                grab("hap.Pool.resolve_token() -> hap.Token"),
            )
        )
        if "hermes load_pool" in text:
            hermes_load = grab("hermes load_pool('anthropic').select()")
            hermes_held = grab("hermes pool.select() on a loaded pool")
    else:
        missing.append(str(py))

    nj = d / "node.json"
    if nj.exists():
        node = json.loads(nj.read_text())
        how = f"median of {node['rounds']} rounds x {node['calls']}"
        by = {r["name"]: r for r in node["results"]}
        rows.append(("Node koffi `resolveTokenSync()`", how, by["resolveTokenSync"]["koffi_ns"]))
        rows.append(("Node ffi-napi, same call", how, by["resolveTokenSync"]["ffi_napi_ns"]))
        rows.append(
            ("Node koffi raw `hap_resolve_token`", how, by["hap_resolve_token"]["koffi_ns"])
        )
        rows.append(
            ("Node ffi-napi raw `hap_resolve_token`", how, by["hap_resolve_token"]["ffi_napi_ns"])
        )
    else:
        missing.append(str(nj))

    go = d / "go.txt"
    if go.exists():
        vals = [
            float(m.group(1))
            for m in re.finditer(
                r"^BenchmarkResolveTokenHot-\d+\s+\d+\s+([0-9.]+) ns/op", go.read_text(), re.M
            )
        ]
        if vals:
            rows.append(
                (
                    "Go `Pool.ResolveToken`",
                    f"median of {len(vals)} `-count` runs",
                    statistics.median(vals),
                )
            )
        else:
            missing.append("go.txt: BenchmarkResolveTokenHot")
    else:
        missing.append(str(go))

    c_ns = next((ns for what, _, ns in rows if what.startswith("C `hap_resolve")), None)
    print("### Hot resolve (valid token, unchanged files): per-call median\n")
    print("| binding / call | measured as | per call | vs C loop |")
    print("|---|---|---:|---:|")
    for what, how, ns in rows:
        ratio = f"{ns / c_ns:.1f}x" if ns and c_ns else "-"
        print(f"| {what} | {how} | {us(ns) if ns is not None else 'missing'} | {ratio} |")

    st = d / "strace.txt"
    if st.exists():
        total = re.search(r"^\s*100\.00\s+\S+\s+\S+\s+(\d+)\s+(\d+\s+)?total", st.read_text(), re.M)
        if total:
            print(
                f"\nSystem calls of a whole `hot_resolve` process doing 40000 hot resolves "
                f"(setup included, all threads; `strace -f -c`): {total.group(1)}"
            )
        else:
            print("\nSystem-call count: " + st.read_text().strip().splitlines()[-1])

    refresh = criterion("refresh/full_refresh_local_server".replace("/", "_"))
    if refresh is not None:
        ms = refresh / 1e6
        print(f"\nFull refresh, one process, local fake server (criterion median): {ms:.1f} ms")

    hap_py = next((ns for what, _, ns in rows if what.startswith("Python `hap.Pool")), None)
    if hermes_load is not None:
        print("\n### Per-request cost, Hermes Agent vs hap (same files, Python)\n")
        print("| call | per call | vs hap `resolve_token()` |")
        print("|---|---:|---:|")
        print(f"| hap `Pool.resolve_token()` | {us(hap_py)} | 1.0x |")
        load_ratio, held_ratio = hermes_load / hap_py, hermes_held / hap_py
        print(
            f'| Hermes `load_pool("anthropic").select()` | {us(hermes_load)} | {load_ratio:.0f}x |'
        )
        print(
            f"| Hermes `pool.select()` on a pool loaded once | {us(hermes_held)} "
            f"| {held_ratio:.2f}x |"
        )

    rj = d / "race.json"
    if rj.exists():
        race = json.loads(rj.read_text())
        print("\n### Refresh under contention: N processes, one expired login, one start instant\n")
        print(
            "| tool | N | wall ms (median) | token POSTs | invalid_grant | console 404 POSTs "
            "| processes without a token | distinct tokens | session alive after | "
            "dropped from credentials file | dropped from auth.json | "
            "2nd call: recovered / callers (POSTs) |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|")
        for s in race["summary"]:
            creds = (
                ", ".join(k for k in s["dropped_credentials_keys"] if k.count(".") == 1) or "none"
            )
            auth = ", ".join(s["dropped_auth_json_keys"]) or "none"
            print(
                f"| {s['tool']} | {s['n']} | {s['wall_ms_median']:.0f} | {s['posts']} | "
                f"{s['invalid_grant']} | {s['console_404_posts']} | {s['no_token']} | "
                f"{s['distinct_tokens']} | {s['session_alive_after']} | {creds} | {auth} | "
                f"{s['second_call_recovered']} / {s['second_call_callers']} "
                f"({s['second_call_posts']}) |"
            )
        errs = {f"{s['tool']} N={s['n']}": s["errors"] for s in race["summary"] if s["errors"]}
        if errs:
            print("\nErrors reported by processes without a token: " + json.dumps(errs))
    else:
        missing.append(str(rj))

    load = d / "load.txt"
    if load.exists():
        print("\n### Load average (1, 5, 15 min) when each step started\n")
        print("```")
        print(load.read_text().rstrip())
        print("```")

    if missing:
        print("\nMISSING: " + "; ".join(missing), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
