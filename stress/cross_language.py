#!/usr/bin/env python3
"""Cross-language stress: many C, Python, Node and Go processes share one Claude Code
credentials file and several Hermes profile pool files through many rotations, while an
outside writer that takes no lock (like an older Claude Code) rotates now and then, and a
sampler reads every store at random instants.

    python3 stress/cross_language.py --short     # CI: 24 processes, >= 20 rotations, ~1 min
    python3 stress/cross_language.py --long      # the report: 32 processes, 5 minutes

Build the workers first (stress/build.sh). The server's expires_in is short and every worker
asks for a min_validity_ms close to it, so the shared login rotates every second or two.
Each pool file also holds a `manual` row that owns its tokens (refreshed under the pool
file's lock by the workers using round_robin / least_used).

How a POST is attributed: the fake server logs each POST's User-Agent (hap sends
"hap/<version>", the outside writer its own) and the sha256 of the refresh token presented.
A hap POST answered invalid_grant is "expected" when the outside writer had spent that token
first (hap then adopts the writer's pair within its 3 s watch); one answered invalid_grant
because another hap process had spent it is a double spend: a bug.

Pairs lost = pairs the server issued - issued refresh tokens later spent - issued refresh
tokens still live in a store at the end (or pending in a journal). Exit status 1 when a goal
is missed; the last lines are a plain summary.
"""

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common
from common import now_ms, sha16

WRITER_UA = "claude-cli/0.2.9 (stress outside writer, no lock)"
STRATEGIES = ["fill_first", "round_robin", "fill_first", "least_used"]


class OutsideWriter(threading.Thread):
    """An older Claude Code: no lock. POSTs with the refresh token it reads, then writes the
    new pair 0-1 s later into the credentials file, keeping every other key (atomic replace,
    so the sampler's torn-file count measures hap alone)."""

    def __init__(self, server, creds, first_at, stop_at, every, rng):
        super().__init__(daemon=True)
        self.server, self.creds, self.first_at, self.stop_at = server, creds, first_at, stop_at
        self.every, self.rng = every, rng
        self.rotations = self.lost_races = self.errors = 0
        self.inplace = False
        self.writing = False

    def write_inplace(self, doc):
        """Truncate and write in two halves, as a plain writeFileSync would (--writer-inplace):
        readers can see an empty or half file meanwhile."""
        raw = json.dumps(doc, indent=2).encode()
        self.writing = True
        try:
            with open(self.creds, "r+b") as f:
                f.truncate(0)
                f.write(raw[: len(raw) // 2])
                f.flush()
                time.sleep(0.002)
                f.write(raw[len(raw) // 2 :])
        finally:
            time.sleep(0.001)
            self.writing = False

    def run(self):
        time.sleep(max(0, self.first_at - now_ms()) / 1000)
        while now_ms() < self.stop_at:
            state, doc = common.read_json(self.creds)
            if state != "ok":
                self.errors += 1
            else:
                refresh = doc["claudeAiOauth"]["refreshToken"]
                status, body = self.server.post_refresh(refresh, WRITER_UA)
                if status == 200:
                    expires = now_ms() + body["expires_in"] * 1000
                    time.sleep(self.rng.uniform(0, 1.0))
                    state, doc = common.read_json(self.creds)
                    if state == "ok":
                        o = doc["claudeAiOauth"]
                        o["accessToken"], o["refreshToken"] = body["access_token"], body["refresh_token"]
                        o["expiresAt"] = expires
                        if self.inplace:
                            self.write_inplace(doc)
                        else:
                            common.write_json_atomic(self.creds, doc)
                        self.rotations += 1
                    else:
                        self.errors += 1
                elif status == 400 and body.get("error") == "invalid_grant":
                    self.lost_races += 1  # hap rotated between our read and our POST
                else:
                    self.errors += 1
            time.sleep(self.rng.uniform(*self.every))


class Sampler(threading.Thread):
    """Reads every store at random instants; counts samples that do not parse, and learns
    which refresh token lived in which store (to attribute rotations to authorities)."""

    def __init__(self, creds, pools, stop_at, mean_gap_ms, rng, writer=None):
        super().__init__(daemon=True)
        self.writer = writer
        self.torn_by_writer = 0
        self.files = [("creds", creds)] + [(f"pool{i}", p) for i, p in enumerate(pools)]
        self.files += [(f"journal:{k}", common.journal_path(p)) for k, p in self.files]
        self.stop_at, self.gap, self.rng = stop_at, mean_gap_ms, rng
        self.samples = Counter()
        self.torn = Counter()
        self.missing_after_seen = Counter()
        self.seen = set()
        self.owner = {}  # refresh token sha16 -> authority name

    def sample_once(self):
        files = list(self.files)
        self.rng.shuffle(files)
        for name, path in files:
            state, doc = common.read_json(path)
            if state == "missing":
                if path in self.seen:
                    self.missing_after_seen[name] += 1
                continue
            self.seen.add(path)
            if state == "torn" and name == "creds" and self.writer is not None and self.writer.writing:
                self.torn_by_writer += 1  # the outside writer's own non-atomic write
                continue
            self.samples[name] += 1
            if state == "torn":
                self.torn[name] += 1
                continue
            if name == "creds":
                r = (doc.get("claudeAiOauth") or {}).get("refreshToken")
                if r:
                    self.owner.setdefault(sha16(r), "creds")
            elif name.startswith("pool"):
                for row in common.pool_rows(doc):
                    if row.get("source") == "manual" and row.get("refresh_token"):
                        self.owner.setdefault(sha16(row["refresh_token"]), name)

    def run(self):
        while now_ms() < self.stop_at:
            self.sample_once()
            time.sleep(self.rng.uniform(0, 2 * self.gap) / 1000)


def analyse_log(log):
    """Attribute every token-endpoint POST. Returns a dict of counters."""
    a = Counter()
    spent_by = {}
    replayed = set()
    for e in log:
        who = (
            "hap"
            if (e.get("user_agent") or "").startswith("hap/")
            else ("writer" if e.get("user_agent") == WRITER_UA else "other")
        )
        h, st = e.get("refresh_token_sha256"), e.get("status")
        a[f"{who}_posts"] += 1
        if st == 200:
            a[f"{who}_rotations"] += 1
            if h in spent_by:
                a["server_accepted_a_spent_token"] += 1
            spent_by[h] = who
        elif st == 400:
            first = spent_by.get(h)
            if who == "hap":
                if first == "writer":
                    a["hap_invalid_grant_writer_spent"] += 1
                    if h not in replayed:
                        replayed.add(h)
                        a["writer_spent_tokens_hap_presented"] += 1
                elif first == "hap":
                    a["hap_invalid_grant_hap_spent"] += 1  # a double spend: a bug
                else:
                    a["hap_invalid_grant_unknown"] += 1
            else:
                a[f"{who}_invalid_grant"] += 1
        else:
            a[f"{who}_status_{st}"] += 1
    return a, spent_by


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--short", action="store_true", help="CI preset (the default)")
    ap.add_argument("--long", action="store_true", help="report preset")
    ap.add_argument("--procs", type=int)
    ap.add_argument("--pools", type=int, help="profile pool files")
    ap.add_argument("--duration", type=float, help="seconds of resolving")
    ap.add_argument("--expires-in", type=int, default=4, help="server expires_in, seconds")
    ap.add_argument(
        "--writer-every",
        type=float,
        nargs=2,
        metavar=("MIN", "MAX"),
        help="seconds between outside-writer rotations",
    )
    ap.add_argument("--pause-ms", type=int, default=25, help="mean pause between resolves")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument(
        "--c-threads", type=int, default=4, help="threads resolving concurrently in each C worker's pool"
    )
    ap.add_argument("--keep", action="store_true", help="keep the temporary home")
    ap.add_argument(
        "--writer-inplace",
        action="store_true",
        help="the outside writer truncates and rewrites the file in place (not atomic), as a plain "
        "writeFileSync does; its own torn states are not counted against hap",
    )
    args = ap.parse_args()
    preset = (
        dict(procs=32, pools=6, duration=300, writer_every=(4.0, 12.0))
        if args.long
        else dict(procs=24, pools=4, duration=45, writer_every=(4.0, 9.0))
    )
    for k, v in preset.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)

    cmds = common.worker_cmds()
    if not cmds:
        print("no worker is built: run stress/build.sh", file=sys.stderr)
        return 2
    langs = sorted(cmds)
    print(
        f"cross-language stress: {args.procs} processes ({', '.join(langs)}; C with {args.c_threads} "
        "threads on one handle), "
        f"{args.pools} pool files, {args.duration:.0f}s, expires_in={args.expires_in}s, seed={seed}"
    )
    if len(langs) < 4:
        print(f"  WARNING: only {langs} are built (stress/build.sh builds all four)")

    server = common.FakeServer(expires_in=args.expires_in)
    home = tempfile.mkdtemp(prefix="hap-stress-")
    creds = os.path.join(home, "claude/.credentials.json")
    common.write_creds(creds, "sk-ant-oat01-fake-a0", "sk-ant-ort01-fake-r0", now_ms() - 60_000)
    seeds = {sha16("sk-ant-ort01-fake-r0")}
    pools = []
    for i in range(args.pools):
        p = os.path.join(home, "hermes/auth.json" if i == 0 else f"hermes/profiles/p{i}/auth.json")
        os.makedirs(os.path.dirname(p), mode=0o700, exist_ok=True)
        common.write_json_atomic(
            p,
            common.pool_doc(str(i), f"sk-ant-ort01-fake-m{i}", f"sk-ant-oat01-fake-m{i}", now_ms() - 60_000),
        )
        seeds.add(sha16(f"sk-ant-ort01-fake-m{i}"))
        pools.append(p)

    lifetime = args.expires_in * 1000
    start_at = now_ms() + 3000 + 60 * args.procs
    until = start_at + int(args.duration * 1000)
    procs = []
    for i in range(args.procs):
        lang = langs[i % len(langs)]
        mv = int(lifetime * rng.uniform(0.25, 0.6))
        cfg = {
            "pool_path": pools[i % args.pools],
            "credentials_path": creds,
            "token_urls": [server.token_url],
            "refresh_skew_ms": mv,
            "strategy": STRATEGIES[(i // len(langs)) % len(STRATEGIES)],
            "lock_timeout_ms": 20000,
            "http_timeout_ms": 5000,
        }
        procs.append(
            (
                lang,
                cfg["strategy"],
                common.start_worker(
                    lang,
                    cmds,
                    cfg,
                    until_ms=until,
                    start_at_ms=start_at,
                    min_validity_ms=mv,
                    pause_ms=args.pause_ms,
                    extra_env={"HAP_STRESS_THREADS": str(args.c_threads)} if lang == "c" else None,
                ),
            )
        )

    writer = OutsideWriter(
        server, creds, start_at + 3000, until - 3000, args.writer_every, random.Random(rng.random())
    )
    writer.inplace = args.writer_inplace
    sampler = Sampler(creds, pools, until + 2000, 8, random.Random(rng.random()), writer)
    writer.start()
    sampler.start()
    print(
        f"  started; resolving from +{(start_at - now_ms()) / 1000:.1f}s for {args.duration:.0f}s ...",
        flush=True,
    )

    per_lang = defaultdict(Counter)
    errors = Counter()
    messages = []
    for lang, strategy, p in procs:
        s = common.summary_of(p, timeout=max(30, (until - now_ms()) / 1000 + 60))
        c = per_lang[lang]
        c["procs"] += 1
        for k in ("calls", "ok", "refreshed", "expired_served"):
            c[k] += s.get(k, 0)
        c["max_call_ms"] = max(c["max_call_ms"], s.get("max_call_ms", 0))
        for name, n in (s.get("errors") or {}).items():
            errors[name] += n
            c["failed"] += n
        for m in s.get("messages") or []:
            if len(messages) < 10:
                messages.append(f"{lang}/{strategy}: {m}")
    writer.join(timeout=30)
    sampler.join(timeout=30)
    sampler.sample_once()

    stats = server.stats()
    server.close()
    a, spent_by = analyse_log(stats["log"])

    # Final stores: unknown keys, live tokens.
    state, cdoc = common.read_json(creds)
    kept, total, missing = common.survivors(cdoc if state == "ok" else None, common.CREDS_UNKNOWN)
    live = {}
    if state == "ok":
        live[sha16(cdoc["claudeAiOauth"]["refreshToken"])] = "creds"
    for i, p in enumerate(pools):
        st, pdoc = common.read_json(p)
        k, t, m = common.survivors(pdoc if st == "ok" else None, common.pool_unknown(str(i)))
        kept, total, missing = kept + k, total + t, missing + [f"pool{i}:{x}" for x in m]
        for row in common.pool_rows(pdoc):
            if row.get("source") == "manual" and row.get("refresh_token"):
                live[sha16(row["refresh_token"])] = f"pool{i}"
    pending = set()
    for p in [creds, *pools]:
        st, jdoc = common.read_json(common.journal_path(p))
        for e in (jdoc or {}).get("entries", []) if st == "ok" else []:
            if not e.get("committed") and e.get("refresh_token"):
                pending.add(sha16(e["refresh_token"]))

    issued = stats["issued"]
    spent_issued = sum(1 for h in spent_by if h not in seeds)
    live_issued = {h for h in live if h not in seeds and h not in spent_by}
    pending_only = {h for h in pending if h not in live and h not in spent_by}
    lost = issued - spent_issued - len(live_issued) - len(pending_only)
    spent_in_store = [name for h, name in live.items() if h in spent_by]

    owner = dict(sampler.owner)
    owner.update({h: n for h, n in live.items()})
    rot_by_auth = Counter()
    for e in stats["log"]:
        if e["status"] == 200:
            rot_by_auth[owner.get(e["refresh_token_sha256"], "unattributed")] += 1

    hap_posts, hap_rot = a["hap_posts"], a["hap_rotations"]
    writer_ig = a["hap_invalid_grant_writer_spent"]
    ratio = (hap_posts - writer_ig) / hap_rot if hap_rot else float("nan")
    raw_ratio = hap_posts / hap_rot if hap_rot else float("nan")
    rotations = hap_rot + a["writer_rotations"]
    calls = sum(c["calls"] for c in per_lang.values())
    failed = sum(errors.values())
    refreshed_flags = sum(c["refreshed"] for c in per_lang.values())
    expired = sum(c["expired_served"] for c in per_lang.values())
    torn = sum(sampler.torn.values())
    vanished = sum(sampler.missing_after_seen.values())

    print("\nper language:")
    for lang in langs:
        c = per_lang[lang]
        print(
            f"  {lang:6} procs {c['procs']:3}  calls {c['calls']:7}  ok {c['ok']:7}  "
            f"failed {c['failed']:4}  refreshed {c['refreshed']:4}  max call {c['max_call_ms']} ms"
        )
    print(f"rotations by store: {dict(sorted(rot_by_auth.items()))}")
    print(
        f"outside writer: {writer.rotations} rotations, {writer.lost_races} lost races "
        f"(hap rotated between its read and its POST), {writer.errors} errors"
    )
    print(
        f"server: posts {stats['posts']}, issued {issued}, invalid_grant {stats['invalid_grant']}, "
        f"other statuses {sum(v for k, v in a.items() if '_status_' in k)}"
    )
    print(
        f"hap: {hap_posts} POSTs for {hap_rot} rotations (raw {raw_ratio:.3f}); "
        f"{writer_ig} invalid_grant after the outside writer spent the token (expected, adopted); "
        f"{a['hap_invalid_grant_hap_spent']} after another hap process spent it; "
        f"{a['hap_invalid_grant_unknown']} unexplained"
    )
    print(
        f"  the {writer_ig} invalid_grant POSTs presented {a['writer_spent_tokens_hap_presented']} "
        f"distinct writer-spent tokens: {writer_ig - a['writer_spent_tokens_hap_presented']} "
        "were replays of a token a hap process had already seen refused"
    )
    print(
        f"refreshed=true results {refreshed_flags} (hap rotations {hap_rot}); expired tokens served {expired}"
    )
    print(
        f"samples: {sum(sampler.samples.values())} reads of {len(sampler.samples)} files; "
        f"torn {torn} {dict(sampler.torn) or ''}; vanished {vanished}"
        + (f"; torn by the in-place outside writer {sampler.torn_by_writer}" if args.writer_inplace else "")
    )
    if errors:
        print(f"failed calls by status: {dict(errors)}")
        for m in messages:
            print(f"  {m}")
    if missing:
        print(f"unknown fields lost: {missing}")
    if spent_in_store:
        print(f"stores holding a spent refresh token at the end: {spent_in_store}")

    goals = [
        ("rotations >= 20", rotations >= 20),
        (f"processes >= 24 ({args.procs})", args.procs >= 24),
        ("hap POSTs per rotation == 1.0", hap_rot > 0 and abs(ratio - 1.0) < 1e-9),
        (
            "no double spend by hap",
            a["hap_invalid_grant_hap_spent"] == 0 and a["hap_invalid_grant_unknown"] == 0,
        ),
        ("failed calls == 0", failed == 0),
        ("pairs lost == 0", lost == 0 and not spent_in_store),
        ("torn samples == 0", torn == 0 and vanished == 0),
        ("unknown fields survived", kept == total),
        ("no expired token served", expired == 0),
    ]
    if args.keep:
        print(f"home kept: {home}")
    else:
        shutil.rmtree(home, ignore_errors=True)
    missed = [g for g, ok in goals if not ok]
    print("\n== cross_language summary")
    mix = ", ".join(f"{x}={per_lang[x]['procs']}" for x in langs)
    print(
        f"processes {args.procs} ({mix}), pool files {args.pools}, duration {args.duration:.0f}s, seed {seed}"
    )
    print(f"rotations {rotations} (hap {hap_rot}, outside writer {a['writer_rotations']})")
    print(
        f"hap POSTs per rotation {ratio:.3f} (goal 1.0; raw {raw_ratio:.3f} incl. "
        f"{writer_ig} invalid_grant caused by the outside writer)"
    )
    print(
        f"invalid_grant responses {stats['invalid_grant']} (hap after writer {writer_ig}, "
        f"hap after hap {a['hap_invalid_grant_hap_spent']}, writer lost race {a['writer_invalid_grant']})"
    )
    print(f"calls {calls}, failed {failed} {dict(errors) if errors else ''}")
    print(
        f"pairs lost {lost} (issued {issued}, spent {spent_issued}, live {len(live_issued)}, "
        f"pending in journal {len(pending_only)})"
    )
    print(f"torn/unparseable samples {torn} of {sum(sampler.samples.values())}")
    print(f"unknown fields surviving {kept}/{total}")
    print("RESULT: " + ("PASS" if not missed else "FAIL: " + "; ".join(missed)))
    return 0 if not missed else 1


if __name__ == "__main__":
    sys.exit(main())
