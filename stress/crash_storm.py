#!/usr/bin/env python3
"""Crash storm: SIGKILL a process in the middle of a refresh, again and again, then let a
fresh process resolve, and check that no store is torn and the session survives.

    python3 stress/crash_storm.py --short     # CI: 30 iterations, every injected point
    python3 stress/crash_storm.py --long      # the report: 260 iterations

Two kinds of kill, alternating:
- injected: the fault-injection build of the Rust worker (target/fault, see stress/build.sh)
  dies by SIGKILL at a named point of the refresh transaction (HAP_FAULT=<point>), for both
  authorities: the credentials file (the claude_code row) and a pool row that owns its tokens.
- random: a C, Python, Node, Go or Rust worker is SIGKILLed by the driver after a random
  delay while the fake server holds the refresh response back for 20-250 ms. In every other
  random kill, once the victim's POST has reached the server (so it holds the locks),
  --crowd C workers (default 3) queue behind it: when it dies they must take over its locks
  and each get a token (or, if the session died with it, REAUTH_REQUIRED).

Each iteration starts from a fresh home: an expired credentials file and a pool file, both
seeded with unknown keys. After the kill (and after the server has finished any request),
every store and journal must parse; a fresh process then resolves. The session may be lost
only when the kill fell after the server spent the refresh token and before the journal
entry was durable (HAP_FAULT=after_token_response, mid_write of the journal, or a random kill
in that window): those are counted apart. Anything else that loses the session, a torn
file, a blanked store, an unknown key dropped, or a spent token POSTed again after the
journal was durable, is a failure (exit status 1). The last lines are a plain summary.
"""

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common
from common import now_ms, sha16

CREDS_POINTS = [
    "before_post",
    "after_token_response",
    "after_journal",
    "after_store_write",
    "after_pool_write",
    "after_commit",
    "mid_write:.credentials.json",
    "mid_write:auth.json",
    "mid_write:.credentials.hap-journal.json",
]
POOL_POINTS = [
    "before_post",
    "after_token_response",
    "after_journal",
    "after_commit",
    "mid_write:auth.json",
    "mid_write:.auth.hap-journal.json",
]
# Points where the server has spent the token and the new pair is not durable anywhere.
# What a process may answer once the session is gone: REAUTH_REQUIRED, or NO_CREDENTIAL when
# a sibling on the same pool file has already marked the row dead.
LOST_ANSWERS = {"HAP_STATUS_REAUTH_REQUIRED", "HAP_STATUS_NO_CREDENTIAL"}
WINDOW_POINTS = {
    "after_token_response",
    "mid_write:.credentials.hap-journal.json",
    "mid_write:.auth.hap-journal.json",
}


class Home:
    def __init__(self, root, n, authority, server):
        self.dir = os.path.join(root, f"it{n}")
        self.creds = os.path.join(self.dir, "claude/.credentials.json")
        self.pool = os.path.join(self.dir, "hermes/auth.json")
        self.tag = str(n)
        self.authority = authority
        self.seed_refresh = f"sk-ant-ort01-fake-s{n}"
        self.seed_access = f"sk-ant-oat01-fake-s{n}"
        expired = now_ms() - 60_000
        common.write_creds(
            self.creds,
            self.seed_access if authority == "creds" else "sk-ant-oat01-fake-c",
            self.seed_refresh if authority == "creds" else "sk-ant-ort01-fake-c",
            expired,
        )
        os.makedirs(os.path.dirname(self.pool), mode=0o700)
        # Only the row under test has a token: no fallback to another row hides a loss.
        if authority == "pool":
            doc = common.pool_doc(self.tag, self.seed_refresh, self.seed_access, expired)
        else:
            doc = common.pool_doc(self.tag)
        common.write_json_atomic(self.pool, doc)
        self.row_id = f"m{n}" if authority == "pool" else f"cc{n}"
        cfg = {
            "pool_path": self.pool,
            "credentials_path": self.creds,
            "token_urls": [server.token_url],
            "lock_timeout_ms": 15000,
            "http_timeout_ms": 5000,
            "strategy": "fill_first",
        }
        if authority == "pool":
            # No credentials file: the claude_code row has no token, the manual row serves.
            cfg["credentials_path"] = None
            cfg["adopt_external_logins"] = False
        self.cfg = cfg

    @property
    def store(self):
        return self.creds if self.authority == "creds" else self.pool

    def files(self):
        fs = [self.creds, self.pool, common.journal_path(self.creds), common.journal_path(self.pool)]
        return [f for f in fs if os.path.exists(f)]

    def check_files(self):
        """[(file name, problem)] for torn or vanished stores."""
        bad = []
        for f in (self.creds, self.pool, common.journal_path(self.creds), common.journal_path(self.pool)):
            state, _ = common.read_json(f)
            if state == "torn" or (state == "missing" and f in (self.creds, self.pool)):
                bad.append((os.path.basename(f), state))
        return bad

    def live_refresh(self):
        if self.authority == "creds":
            state, doc = common.read_json(self.creds)
            return (doc or {}).get("claudeAiOauth", {}).get("refreshToken") if state == "ok" else None
        state, doc = common.read_json(self.pool)
        for row in common.pool_rows(doc if state == "ok" else None):
            if row.get("id") == f"m{self.tag}":
                return row.get("refresh_token")
        return None

    def journal_covers_seed(self):
        state, doc = common.read_json(common.journal_path(self.store))
        fp = "sha256:" + sha16(self.seed_refresh)
        return state == "ok" and any(e.get("spent") == fp for e in doc.get("entries", []))

    def unknown_lost(self):
        lost = []
        st, doc = common.read_json(self.creds)
        lost += common.survivors(doc if st == "ok" else None, common.CREDS_UNKNOWN)[2]
        st, doc = common.read_json(self.pool)
        exp = common.pool_unknown(self.tag, manual=self.authority == "pool")
        lost += [f"pool:{m}" for m in common.survivors(doc if st == "ok" else None, exp)[2]]
        return lost

    def leftovers(self):
        n = 0
        for d in (os.path.dirname(self.creds), os.path.dirname(self.pool)):
            n += sum(1 for f in os.listdir(d) if f.endswith(".tmp"))
        return n


def wait_server_idle(server, timeout_s):
    """Waits until the server has answered every POST it received (a killed client's request
    is still processed and spends the token, as a real server would)."""
    deadline = time.time() + timeout_s
    quiet_since = None
    while time.time() < deadline:
        st = server.stats()
        busy = any(e["status"] is None for e in st["log"])
        if not busy:
            quiet_since = quiet_since or time.time()
            if time.time() - quiet_since > 0.1:
                return st
        else:
            quiet_since = None
        time.sleep(0.02)
    return server.stats()


def rust_worker(home, fault=None):
    env = dict(os.environ, HAP_LIBRARY_PATH=common.LIB)
    env.pop("HAP_FAULT", None)
    if fault:
        env["HAP_FAULT"] = fault
    return subprocess.Popen(
        [common.FAULT_WORKER, json.dumps(home.cfg)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def start(lang, home, cmds):
    if lang == "rust":
        return rust_worker(home)
    return common.start_worker(lang, cmds, home.cfg)


def start_crowd(home, cmds, n):
    """n one-shot C workers on the same credential: profiles of their own sharing the
    credentials file, or the same pool file for a pool-owned row."""
    out = []
    for k in range(n):
        cfg = dict(home.cfg)
        if home.authority == "creds":
            cfg["pool_path"] = os.path.join(home.dir, f"hermes/profiles/w{k}/auth.json")
        out.append(common.start_worker("c", cmds, cfg))
    return out


def outcome_of(lang, proc, timeout=60, row_id=None):
    """(got_token, error name) of a one-shot worker; with row_id, the token must come from
    that row."""
    if lang == "rust":
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            return False, "DRIVER_TIMEOUT"
        for line in reversed(out.strip().splitlines()):
            try:
                v = json.loads(line)
            except ValueError:
                continue
            if "token_sha256" in v and row_id and v.get("credential_id") != row_id:
                return False, f"token from another row {v.get('credential_id')}"
            return "token_sha256" in v, v.get("error")
        return False, f"NO_OUTPUT(rc={proc.returncode})"
    s = common.summary_of(proc, timeout)
    ok = s.get("ok", 0) >= 1 and s.get("ok") == s.get("calls")
    return ok, None if ok else ",".join(s.get("errors", {})) or "?"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--short", action="store_true", help="CI preset (the default)")
    ap.add_argument("--long", action="store_true", help="report preset")
    ap.add_argument("--iterations", type=int)
    ap.add_argument("--seed", type=int)
    ap.add_argument(
        "--crowd", type=int, default=3, help="C workers queued behind a random-kill victim (0: none)"
    )
    ap.add_argument("--keep", action="store_true", help="keep the temporary homes")
    args = ap.parse_args()
    if args.iterations is None:
        args.iterations = 260 if args.long else 30
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    if not os.path.exists(common.FAULT_WORKER):
        print(f"missing {common.FAULT_WORKER}: run stress/build.sh", file=sys.stderr)
        return 2
    cmds = common.worker_cmds()
    langs = ["rust", *sorted(cmds)]
    injected = [("creds", p) for p in CREDS_POINTS] + [("pool", p) for p in POOL_POINTS]
    print(
        f"crash storm: {args.iterations} iterations, injected points {len(injected)}, "
        f"random kills in {', '.join(langs)}, seed {seed}",
        flush=True,
    )

    server = common.FakeServer()
    root = tempfile.mkdtemp(prefix="hap-crash-")

    # Calibrate: how long one refresh takes per language with the server delay.
    calib = {}
    for lang in langs:
        times = []
        for k in range(3):
            server.admin("/_admin/reset", {})
            h = Home(root, f"cal-{lang}-{k}", "creds", server)
            server.admin("/_admin/script", {"faults": [{"delay_ms": 250}]})
            t0 = time.monotonic()
            p = start(lang, h, cmds)
            ok, err = outcome_of(lang, p)
            times.append(time.monotonic() - t0)
            if not ok:
                print(f"calibration of {lang} failed: {err}", file=sys.stderr)
                return 2
        calib[lang] = statistics.median(times)
    print(
        "  one refresh with a 250 ms server delay takes (median of 3): "
        + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in calib.items()),
        flush=True,
    )

    rows = defaultdict(Counter)  # case -> counters
    fails = []
    torn_total = 0
    recover_ms = []
    crowd_ms = []
    leftovers = 0
    t_start = time.time()
    plan = []
    n_inj = (args.iterations + 1) // 2
    for i in range(n_inj):
        plan.append(("inject", *injected[i % len(injected)], 0))
    for i in range(args.iterations - n_inj):
        # every other random kill has a crowd queued behind the victim
        plan.append(("random", rng.choice(["creds", "pool"]), langs[i % len(langs)], (i // len(langs)) % 2))
    rng.shuffle(plan)

    for n, (kind, authority, what, with_crowd) in enumerate(plan):
        server.admin("/_admin/reset", {})
        home = Home(root, n, authority, server)
        crowd, crowd_out = [], []
        if kind == "inject":
            case = f"{authority:5} {what}"
            proc = rust_worker(home, what)
            try:
                proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
            killed = proc.returncode == -signal.SIGKILL
            st = wait_server_idle(server, 5)
        else:
            delay = rng.randint(20, 250)
            server.admin("/_admin/script", {"faults": [{"delay_ms": delay}]})
            proc = start(what, home, cmds)
            # Uniform over the whole run: start-up, lock, POST, server delay, journal, writes.
            kill_at = time.monotonic() + rng.uniform(0, calib[what] - 0.25 + delay / 1000 + 0.03)
            # Once the victim's POST reaches the server (it holds the locks then), a crowd of
            # C workers queues behind it (started from a thread, so the kill stays on time):
            # they must take over when it dies.
            stop = threading.Event()

            def queue_crowd(home=home, stop=stop, crowd=crowd):
                while not stop.is_set():
                    if server.stats()["log"]:
                        crowd.extend(start_crowd(home, cmds, args.crowd))
                        return
                    time.sleep(0.005)

            watcher = threading.Thread(target=queue_crowd, daemon=True)
            if with_crowd and args.crowd and "c" in cmds:
                watcher.start()
            time.sleep(max(0, kill_at - time.monotonic()))
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
            killed = proc.returncode == -signal.SIGKILL
            stop.set()
            if watcher.is_alive():
                watcher.join()
            for c in crowd:
                crowd_out.append(common.summary_of(c, 60))
            st = wait_server_idle(server, delay / 1000 + 5)
        seed_h = sha16(home.seed_refresh)
        spent = any(e["refresh_token_sha256"] == seed_h and e["status"] == 200 for e in st["log"])
        durable = home.journal_covers_seed()
        if kind == "random":
            seed_posts = [e for e in st["log"] if e["refresh_token_sha256"] == seed_h]
            if not killed:
                window = "completed"
            elif not seed_posts:
                window = "before POST"
            elif seed_posts[0]["status"] != 200:
                window = "in POST, waiter won"  # the crowd's POST beat the victim's delayed one
            elif not durable:
                window = "POST..journal"
            else:
                window = "after journal"
            case = f"random {what:6} {window}" + (f" +{len(crowd)} waiting" if crowd else "")
        r = rows[case]
        r["n"] += 1
        r["killed"] += killed
        bad = home.check_files()
        posts_before = len(st["log"])

        # The fresh process.
        t0 = time.monotonic()
        fresh = rust_worker(home)
        got, err = outcome_of("rust", fresh, row_id=home.row_id)
        recover_ms.append((time.monotonic() - t0) * 1000)
        st2 = wait_server_idle(server, 5)
        fresh_log = st2["log"][posts_before:]
        replays = sum(1 for e in fresh_log if e["status"] == 400)
        bad += home.check_files()
        lost_keys = home.unknown_lost()
        leftovers += home.leftovers()
        live = home.live_refresh()

        in_window = (
            spent and not durable and ((kind == "inject" and what in WINDOW_POINTS) or kind == "random")
        )
        if bad:
            torn_total += len(bad)
            r["torn"] += len(bad)
            fails.append(f"#{n} {case}: torn/missing {bad}")
        if got:
            r["survived"] += 1
        elif in_window:
            r["lost (allowed window)"] += 1
            if live != home.seed_refresh:
                r["blanked"] += 1
                fails.append(f"#{n} {case}: store does not hold the old pair after the loss")
        else:
            r["LOST"] += 1
            fails.append(
                f"#{n} {case}: session lost ({err}); server spent the token: {spent}, "
                f"journal durable: {durable}, killed: {killed}"
            )
        if not live:
            r["blanked"] += 1
            fails.append(f"#{n} {case}: no refresh token left in the store")
        if replays and not in_window:
            r["spent token POSTed again"] += replays
            fails.append(f"#{n} {case}: the fresh process POSTed a spent token {replays}x")
        r["fresh POSTs"] += len(fresh_log)
        for c in crowd_out:
            r["crowd"] += 1
            crowd_ms.append(c.get("max_call_ms", 0))
            if c.get("ok") == c.get("calls") == 1:
                r["crowd ok"] += 1
            elif not got and in_window and set(c.get("errors", {})) <= LOST_ANSWERS:
                r["crowd ok"] += 1  # the session is gone for everyone, and said so
            else:
                r["crowd failed"] += 1
                fails.append(f"#{n} {case}: a waiting process failed: {c.get('messages')}")
        if lost_keys:
            r["unknown keys lost"] += len(lost_keys)
            fails.append(f"#{n} {case}: unknown keys lost {lost_keys}")
        if kind == "inject" and not killed:
            r["point not reached"] += 1
            fails.append(f"#{n} {case}: the worker did not die at the point (rc {proc.returncode})")
        if not args.keep:
            shutil.rmtree(home.dir, ignore_errors=True)
        if (n + 1) % 50 == 0:
            print(f"  {n + 1} iterations, {time.time() - t_start:.0f}s", flush=True)

    server.close()
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    else:
        print(f"homes kept under {root}")

    cols = [
        "n",
        "killed",
        "survived",
        "lost (allowed window)",
        "LOST",
        "torn",
        "blanked",
        "fresh POSTs",
        "spent token POSTed again",
        "unknown keys lost",
        "point not reached",
        "crowd",
        "crowd failed",
    ]
    short = {
        "lost (allowed window)": "lost:window",
        "fresh POSTs": "fresh POST",
        "spent token POSTed again": "replayed",
        "unknown keys lost": "keys lost",
        "point not reached": "no kill",
        "crowd failed": "crowd fail",
    }
    print(
        "\ncolumns: lost:window = session lost, kill in the allowed window; LOST = lost outside it; "
        "fresh POST = POSTs by the fresh process; replayed = spent token POSTed again after a "
        "durable journal; crowd = processes queued behind the victim"
    )
    print(f"{'case':44} " + " ".join(f"{short.get(c, c)[:11]:>11}" for c in cols))
    for case in sorted(rows):
        print(f"{case:44} " + " ".join(f"{rows[case][c]:>11}" for c in cols))
    for f in fails[:30]:
        print(f"  FAIL {f}")

    tot = Counter()
    for r in rows.values():
        tot.update(r)
    kills = tot["killed"]
    inj = sum(r["killed"] for c, r in rows.items() if not c.startswith("random"))
    rnd = kills - inj
    recover_ms.sort()
    missed = []
    if torn_total:
        missed.append("torn files")
    if tot["LOST"]:
        missed.append("sessions lost outside the window")
    if (
        tot["blanked"]
        or tot["unknown keys lost"]
        or tot["spent token POSTed again"]
        or tot["point not reached"]
        or tot["crowd failed"]
    ):
        missed.append("see FAIL lines")
    print("\n== crash_storm summary")
    print(
        f"iterations {len(plan)}, SIGKILLs {kills} (injected {inj}, random {rnd}; "
        f"{len(plan) - kills} random runs finished before the kill), seed {seed}"
    )
    print(f"torn/unparseable files {torn_total} (goal 0)")
    print(
        f"sessions survived {tot['survived']}; lost in the allowed window {tot['lost (allowed window)']} "
        f"(killed after the server spent the token, before the journal was durable); "
        f"lost outside it {tot['LOST']} (goal 0)"
    )
    print(
        f"blanked stores {tot['blanked']}, unknown keys lost {tot['unknown keys lost']}, "
        f"spent tokens POSTed again after a durable journal {tot['spent token POSTed again']}"
    )
    print(
        f"fresh-process resolve after a kill: median {statistics.median(recover_ms):.0f} ms, "
        f"max {recover_ms[-1]:.0f} ms; leftover temp files {leftovers}"
    )
    if crowd_ms:
        crowd_ms.sort()
        print(
            f"processes waiting behind a killed refresher {tot['crowd']}: failed {tot['crowd failed']}; "
            f"their resolve took median {statistics.median(crowd_ms):.0f} ms, max {crowd_ms[-1]} ms"
        )
    print("RESULT: " + ("PASS" if not missed else "FAIL: " + "; ".join(missed)))
    return 0 if not missed else 1


if __name__ == "__main__":
    sys.exit(main())
