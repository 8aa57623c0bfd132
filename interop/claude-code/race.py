#!/usr/bin/env python3
"""The real Claude Code against N hap processes on one expired login (issue 12, item 6).

Run it through `interop/claude-code/run` (README.md beside this file): that script downloads
the pinned releases and starts this program inside `unshare --net --mount`. This program
refuses to run anywhere else: it checks that the only network interface is loopback before
it touches /etc/hosts (which it bind-mounts privately, never edits) or starts anything.

Inside the namespace: lo up; a private /etc/hosts mapping Anthropic's hosts to 127.0.0.1; a
throwaway CA (trusted only by the Claude Code processes, through NODE_EXTRA_CA_CERTS); hap's
fake token server (testing/fake_token_server.py) on a loopback port; tls_front.py on
127.0.0.1:443 forwarding Claude Code's token POSTs to it and answering the Messages API.

Each round plants a fresh expired login (minted by the fake server) in a fresh HOME, starts
`hap --no-pool token` N times and `claude -p hi` M times in the order its scenario says, and
reads back: POSTs (hap / Claude Code), invalid_grant, whether the file was blanked, whether
subscriptionType and rateLimitTier survived, whether every hap process got the same token,
and whether the refresh token left in the file still works.
"""

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

# Every Anthropic host either release names (grep -o 'https://[a-z0-9.-]*' of cli.js and of
# the binary's embedded JS; FINDINGS.md). Anything not listed does not resolve at all: the
# namespace has no other interface and no reachable name server.
HOSTS = [
    "platform.claude.com",
    "console.anthropic.com",
    "api.anthropic.com",
    "claude.ai",
    "claude.com",
    "www.claude.com",
    "code.claude.com",
    "downloads.claude.ai",
    "statsig.anthropic.com",
    "mcp-proxy.anthropic.com",
    "anthropic.com",
    "www.anthropic.com",
    "docs.anthropic.com",
    "docs.claude.com",
    "support.claude.com",
    "status.anthropic.com",
    "status.claude.com",
]

# Claude Code's documented switches for its own background traffic (docs: "Environment
# variables"). The namespace already makes any other host unreachable; these keep the run
# quiet and fast.
CLAUDE_ENV = {
    "DISABLE_AUTOUPDATER": "1",
    "DISABLE_TELEMETRY": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "DISABLE_BUG_COMMAND": "1",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "CLAUDE_CODE_DISABLE_FEEDBACK_SURVEY": "1",
    "DISABLE_COST_WARNINGS": "1",
}

SCOPES = [
    "user:inference",
    "user:profile",
    "user:sessions:claude_code",
    "user:mcp_servers",
    "user:file_upload",
]
SUBSCRIPTION = "max"
TIER = "default_claude_max_20x"

# Scenarios, rotated round by round. "delay_ms" delays the answer to the first POST of the
# round (fake token server script), which keeps that POST in flight while the others start.
SCENARIOS = {
    # Everyone at the same instant; the first POST is answered 8 s late (Claude Code needs 1-5 s
    # to reach its refresh, hap milliseconds; 8 s stays under hap's current 10 s HTTP timeout).
    "together": {"first": None, "delay_ms": 8000},
    # hap's POST is in flight (answered 12 s late) when Claude Code starts: 2.1.328 waits on
    # .oauth_refresh.lock for ~7.5 s and gives up, then sees 401 and re-reads the file.
    "hap-first-12s": {"first": "hap", "delay_ms": 12000},
    # Claude Code's POST is in flight (answered 3 s late) when the hap processes start.
    "claude-first": {"first": "claude", "delay_ms": 3000},
}


def log(msg):
    print(msg, flush=True)


def die(msg):
    sys.stderr.write("race: %s\n" % msg)
    sys.exit(2)


# ------------------------------------------------------------------------------- namespace


def interfaces():
    """The network interfaces of *this* process's namespace (/proc/self/net/dev follows the
    namespace; /sys/class/net would show the host's until sysfs is remounted)."""
    with open("/proc/self/net/dev") as f:
        lines = f.read().splitlines()[2:]
    return sorted(line.split(":", 1)[0].strip() for line in lines)


def setup_namespace(work):
    if os.environ.get("HAP_INTEROP_IN_NAMESPACE") != "1" or interfaces() != ["lo"]:
        die(
            "refusing to run outside a private network namespace with only loopback "
            "(found interfaces %s); start it with interop/claude-code/run" % interfaces()
        )
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    hosts = os.path.join(work, "hosts")
    with open(hosts, "w") as f:
        f.write("127.0.0.1 localhost\n::1 localhost\n")
        for h in HOSTS:
            f.write("127.0.0.1 %s\n" % h)
    # A private bind mount: unshare --mount made every mount private to this namespace, so
    # the machine's own /etc/hosts is neither edited nor shadowed outside it.
    subprocess.run(["mount", "--bind", hosts, "/etc/hosts"], check=True)
    for h in ("platform.claude.com", "api.anthropic.com"):
        addrs = {a[4][0] for a in socket.getaddrinfo(h, 443)}
        if not addrs <= {"127.0.0.1", "::1"}:
            die("%s resolves to %s, not loopback" % (h, addrs))


def make_ca(work):
    """A throwaway CA and a server certificate for every mapped host (EC keys: fast)."""
    d = os.path.join(work, "tls")
    os.makedirs(d)

    def ssl(*args):
        subprocess.run(["openssl", *args], check=True, cwd=d, capture_output=True)

    ssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key")
    ssl(
        "req",
        "-x509",
        "-new",
        "-key",
        "ca.key",
        "-sha256",
        "-days",
        "2",
        "-out",
        "ca.pem",
        "-subj",
        "/CN=hap interop throwaway CA (do not trust)",
    )
    ssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "server.key")
    ssl(
        "req",
        "-new",
        "-key",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=platform.claude.com",
    )
    with open(os.path.join(d, "ext.cnf"), "w") as f:
        f.write("subjectAltName=" + ",".join("DNS:" + h for h in HOSTS) + "\n")
        f.write("extendedKeyUsage=serverAuth\n")
    ssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-sha256",
        "-extfile",
        "ext.cnf",
        "-out",
        "server.pem",
    )
    return d


# ------------------------------------------------------------------------------- servers


class Servers:
    def __init__(self, work, log_bodies=False, capture=None):
        self.work = work
        args = [
            sys.executable,
            os.path.join(REPO, "testing", "fake_token_server.py"),
            "--exit-on-stdin-eof",
        ]
        if log_bodies:
            args.append("--log-bodies")
        self.fake = subprocess.Popen(
            args,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.base = self.fake.stdout.readline().strip()
        if not self.base.startswith("http://127.0.0.1:"):
            die("fake token server did not start: %r" % self.base)
        self.token_url = self.base + "/v1/oauth/token"
        tls = make_ca(work)
        self.ca = os.path.join(tls, "ca.pem")
        self.front_log = os.path.join(work, "front.jsonl")
        self.planted = os.path.join(work, "planted_access_token")
        open(self.planted, "w").close()
        fargs = [
            sys.executable,
            os.path.join(HERE, "tls_front.py"),
            "--cert",
            os.path.join(tls, "server.pem"),
            "--key",
            os.path.join(tls, "server.key"),
            "--backend",
            self.base,
            "--log",
            self.front_log,
            "--planted-file",
            self.planted,
        ]
        self.capture = capture
        if capture:
            fargs += ["--capture", capture]
        self.front = subprocess.Popen(
            fargs,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        if self.front.stdout.readline().strip() != "ready":
            die("tls_front.py did not start")

    def admin(self, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.base + path,
            data=data,
            method="GET" if body is None else "POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())

    def front_entries(self, since_ms):
        try:
            with open(self.front_log) as f:
                out = [json.loads(line) for line in f if line.strip()]
        except FileNotFoundError:
            return []
        return [e for e in out if e["t_ms"] >= since_ms]

    def refresh_token_works(self, refresh, client_id):
        """POSTs the file's refresh token once (after the round's figures are read): a pair
        that was lost or spent fails here, the way the next refresh would."""
        body = json.dumps(
            {"grant_type": "refresh_token", "refresh_token": refresh, "client_id": client_id}
        ).encode()
        req = urllib.request.Request(
            self.token_url, data=body, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status == 200
        except urllib.error.HTTPError:
            return False

    def close(self):
        for p in (self.front, self.fake):
            with contextlib.suppress(OSError):
                p.stdin.close()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()


# ------------------------------------------------------------------------------- rounds


def claude_argv(release, cache):
    if release == "2.1.112":
        return ["node", os.path.join(cache, "2.1.112", "package", "cli.js")]
    return [os.path.join(cache, release, "package", "claude")]


def plant_login(home, servers, oauth=None):
    """A fresh expired Claude Code login in HOME/.claude: minted by the fake server, or the
    given claudeAiOauth object (its fake tokens are accepted: the server is not --strict)."""
    if oauth is None:
        pair = servers.admin("/_admin/issue", {})
        oauth = {
            "accessToken": pair["access_token"],
            "refreshToken": pair["refresh_token"],
            "expiresAt": int(time.time() * 1000) - 3_600_000,
            "scopes": list(SCOPES),
            "subscriptionType": SUBSCRIPTION,
            "rateLimitTier": TIER,
        }
    pair = {"access_token": oauth["accessToken"], "refresh_token": oauth["refreshToken"]}
    d = os.path.join(home, ".claude")
    os.makedirs(d, mode=0o700)
    path = os.path.join(d, ".credentials.json")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"claudeAiOauth": oauth}, f)
    # Claude Code's global config (~/.claude.json): onboarding done, and an oauthAccount
    # complete enough that a refresh does not also fetch the profile (gEe in FINDINGS.md).
    with open(os.path.join(home, ".claude.json"), "w") as f:
        json.dump(
            {
                "hasCompletedOnboarding": True,
                "numStartups": 5,
                "oauthAccount": {
                    "accountUuid": "00000000-0000-4000-8000-00000000fa4e",
                    "emailAddress": "fake@example.invalid",
                    "organizationUuid": "00000000-0000-4000-8000-00000000fa4f",
                    "billingType": "stripe_subscription",
                    "accountCreatedAt": "2025-01-01T00:00:00Z",
                    "subscriptionCreatedAt": "2025-01-01T00:00:00Z",
                    "ccOnboardingFlags": {},
                },
            },
            f,
        )
    with open(servers.planted, "w") as f:
        f.write(pair["access_token"])
    return path, pair


class Proc:
    def __init__(self, kind, argv, env, outdir, idx):
        self.kind = kind
        self.out = os.path.join(outdir, "%s-%d.out" % (kind, idx))
        self.err = os.path.join(outdir, "%s-%d.err" % (kind, idx))
        self.t0 = time.time()
        with open(self.out, "w") as o, open(self.err, "w") as e:
            self.p = subprocess.Popen(
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=o,
                stderr=e,
                start_new_session=True,
                cwd=env["HOME"],
            )
        self.rc = None

    def wait(self, deadline):
        try:
            self.rc = self.p.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            self.rc = "timeout"
        # Whatever it left behind (Claude Code may spawn helpers) goes with it.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.p.pid, signal.SIGKILL)
        if self.rc == "timeout":
            self.p.wait()
        self.secs = time.time() - self.t0

    def stdout(self):
        with open(self.out) as f:
            return f.read()


def lock_entries(home):
    """Lock directories and owner records in HOME and HOME/.claude, as (relative) names."""
    out = []
    for d in (home, os.path.join(home, ".claude")):
        try:
            names = os.listdir(d)
        except OSError:
            continue
        for n in names:
            if ".lock" in n:
                rel = os.path.relpath(os.path.join(d, n), home)
                out.append(rel + ("/" if os.path.isdir(os.path.join(d, n)) else ""))
    return sorted(out)


def settled_stats(servers, delay_ms):
    """The fake server's stats once every POST of the round has been answered."""
    give_up = time.time() + delay_ms / 1000.0 + 10
    while True:
        stats = servers.admin("/_admin/stats")
        if all(e["status"] is not None for e in stats["log"]) or time.time() > give_up:
            return stats
        time.sleep(0.1)


def wait_for_post(servers, deadline):
    while time.time() < deadline:
        if servers.admin("/_admin/stats")["posts"] >= 1:
            return True
        time.sleep(0.05)
    return False


def run_round(args, servers, release, n, scenario_name, work):
    sc = SCENARIOS[scenario_name]
    rdir = os.path.join(work, "rounds", "%s-%02d" % (release, n))
    home = os.path.join(rdir, "home")
    os.makedirs(home)
    servers.admin("/_admin/reset", {})
    creds, _ = plant_login(home, servers)
    if sc["delay_ms"]:
        servers.admin("/_admin/script", {"faults": [{"delay_ms": sc["delay_ms"]}]})
    base_env = {
        "HOME": home,
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "USER": "root",
        "LANG": "C.UTF-8",
        "TERM": "dumb",
    }
    hap_env = dict(base_env, HAP_LOG="off")
    cc_env = dict(base_env, NODE_EXTRA_CA_CERTS=servers.ca, **CLAUDE_ENV)
    if args.no_extra_ca:
        del cc_env["NODE_EXTRA_CA_CERTS"]
    hap_argv = [
        args.hap_bin,
        *args.hap_arg,
        "--no-pool",
        "token",
        "--json",
        "--token-url",
        servers.token_url,
    ]
    cc_argv = [*claude_argv(release, args.cache), "-p", "hi", *args.claude_arg]

    t_start_ms = int(time.time() * 1000)
    procs = []

    def start(kind):
        if kind == "hap":
            for i in range(args.hap):
                procs.append(Proc("hap", hap_argv, hap_env, rdir, i))
        else:
            for i in range(args.claude):
                procs.append(Proc("claude", cc_argv, cc_env, rdir, i))

    deadline = time.time() + args.timeout
    order_ok = True
    locks_seen = []
    ino_before = os.stat(creds).st_ino
    if sc["first"] is None:
        # Interleave the starts so neither side has a head start.
        for i in range(max(args.hap, args.claude)):
            if i < args.claude:
                procs.append(Proc("claude", cc_argv, cc_env, rdir, i))
            if i < args.hap:
                procs.append(Proc("hap", hap_argv, hap_env, rdir, i))
    else:
        first = sc["first"]
        start(first)
        order_ok = wait_for_post(servers, deadline)
        # What the first side holds while its POST is in flight (live evidence of each
        # release's locks, FINDINGS.md).
        locks_seen = lock_entries(home)
        start("claude" if first == "hap" else "hap")
    # Every process has started; was the round's first POST still unanswered then?
    log0 = servers.admin("/_admin/stats")["log"]
    all_started_in_window = bool(log0) and log0[0]["status"] is None
    for p in procs:
        p.wait(deadline)

    # A POST whose client gave up (hap's 10 s timeout against a 12 s answer) is still being
    # answered: wait for it, or its invalid_grant would be missed here and land in the
    # next round's counters after the reset.
    stats = settled_stats(servers, sc["delay_ms"])
    front = servers.front_entries(t_start_ms)
    hap_posts = sum(1 for e in stats["log"] if (e["user_agent"] or "").startswith("hap/"))
    cc_posts = stats["posts"] - hap_posts
    first_ua = stats["log"][0]["user_agent"] if stats["log"] else None
    first_by = None if first_ua is None else ("hap" if first_ua.startswith("hap/") else "claude")
    if sc["first"] is not None and first_by != sc["first"]:
        order_ok = False

    try:
        st_after = os.lstat(creds)
        file_after = {
            "replaced": st_after.st_ino != ino_before,
            "mode": oct(st_after.st_mode & 0o777),
        }
    except OSError:
        file_after = None
    try:
        with open(creds) as f:
            doc = json.load(f)
        oauth = doc.get("claudeAiOauth") or {}
        parse_ok = True
    except (OSError, ValueError):
        oauth, parse_ok = {}, False
    blanked = (
        (not parse_ok)
        or not oauth.get("accessToken")
        or not oauth.get("refreshToken")
        or oauth.get("expiresAt") == 0
    )
    fields = oauth.get("subscriptionType") == SUBSCRIPTION and oauth.get("rateLimitTier") == TIER

    hap_tokens, hap_fail = set(), 0
    for p in procs:
        if p.kind != "hap":
            continue
        try:
            hap_tokens.add(json.loads(p.stdout())["access_token"])
        except (ValueError, KeyError):
            hap_fail += 1
    hap_same = hap_fail == 0 and len(hap_tokens) == 1
    hap_matches_file = hap_same and oauth.get("accessToken") in hap_tokens
    cc = [p for p in procs if p.kind == "claude"]
    cc_ok = sum(1 for p in cc if p.rc == 0)
    cc_answered = sum(1 for p in cc if "hello from the hap interop fake" in p.stdout())
    msgs = [e for e in front if e["path"] == "/v1/messages"]
    # Overlapping, from evidence only: both sides acted on the expired login while the
    # round's first POST was in flight (it is answered delay_ms after it arrived). Claude
    # Code acted if it POSTed, or called the Messages API with the expired token (it found
    # no fresh token and could not refresh: 2.1.328 gave up on the held lock); hap acted if
    # it POSTed, or was started inside the window (its check takes milliseconds).
    overlap = False
    if stats["log"]:
        w0 = stats["log"][0]["t_ms"]
        w1 = w0 + sc["delay_ms"]
        in_w = [e for e in stats["log"] if e["t_ms"] <= w1]
        cc_acted = any(not (e["user_agent"] or "").startswith("hap/") for e in in_w) or any(
            e["token"] == "planted" and w0 <= e["t_ms"] <= w1 for e in msgs
        )
        hap_acted = any((e["user_agent"] or "").startswith("hap/") for e in in_w) or (
            first_by == "claude" and all_started_in_window
        )
        overlap = cc_acted and hap_acted
    pair_ok = bool(oauth.get("refreshToken")) and servers.refresh_token_works(
        oauth["refreshToken"], oauth.get("clientId") or "9d1c250a-e61b-44d9-88ed-5944d1962f5e"
    )

    r = {
        "release": release,
        "round": n,
        "scenario": scenario_name,
        "posts": stats["posts"],
        "hap_posts": hap_posts,
        "claude_posts": cc_posts,
        "invalid_grant": stats["invalid_grant"],
        "first_post_by": first_by,
        "order_as_planned": order_ok,
        "overlapping": overlap,
        "blanked": blanked,
        "fields_intact": fields,
        "hap_processes": args.hap,
        "hap_failed": hap_fail,
        "hap_same_token": hap_same,
        "hap_token_is_file_token": hap_matches_file,
        "claude_processes": args.claude,
        "claude_exit0": cc_ok,
        "claude_answered": cc_answered,
        "messages_401": sum(1 for e in msgs if e["status"] == 401),
        "pair_in_file_works": pair_ok,
        "locks_held_by_first_poster": locks_seen,
        "file_after": file_after,
        "claudeAiOauth_keys_after": list(oauth),
        "other_requests": sorted(
            {
                "%s %s%s" % (e["method"], e["host"], e["path"])
                for e in front
                if e["path"] not in ("/v1/messages", "/v1/oauth/token")
            }
        ),
        "secs": round(max((p.secs for p in procs), default=0), 1),
        "post_log": [
            {k: e.get(k) for k in ("n", "status", "user_agent", "t_ms", "fault")}
            for e in stats["log"]
        ],
    }
    r["ok"] = r["posts"] == 1 and r["invalid_grant"] == 0 and not blanked and fields and hap_same
    if not args.keep:
        shutil.rmtree(home, ignore_errors=True)
    return r


# Logins whose refresh POST --capture-dir records (request parity, issue 12 item 3). The
# tokens are fixed, obviously fake strings: the fake server (not --strict) accepts them.
DEFAULT_CLIENT_ID = "9d1c250a-e61b-44d9-88ed-5944d1962f5e"
CAPTURE_LOGINS = {
    # A typical subscription login: no clientId stored.
    "no-client-id": {"scopes": SCOPES},
    # No clientId; optional scopes Claude Code keeps (projects, privacy consents), one it
    # does not (org:create_api_key) and one it does not know.
    "no-client-id-optional-scopes": {
        "scopes": [
            "user:inference",
            "user:profile",
            "user:projects:read",
            "user:privacy_consents:write",
            "org:create_api_key",
            "user:fake-future-scope",
        ],
    },
    # No user:inference scope, but a subscriptionType: still refreshed with the defaults.
    "no-client-id-no-inference": {"scopes": ["user:profile"]},
    # A stored clientId (the default one): the stored scopes are sent as they are.
    "stored-client-id": {
        "clientId": DEFAULT_CLIENT_ID,
        "scopes": ["user:inference", "user:profile", "user:fake-future-scope"],
    },
    # A stored clientId of another OAuth client (a fake UUID).
    "stored-other-client-id": {
        "clientId": "00000000-0000-4000-8000-00000000c1d0",
        "scopes": ["user:inference", "user:profile"],
    },
}


def capture(args, servers, work, out_dir):
    """Runs one Claude Code process (and then one hap process) per login of CAPTURE_LOGINS
    and writes each one's refresh POST (headers as sent, raw body) to OUT_DIR."""
    os.makedirs(out_dir, exist_ok=True)
    for rel in args.releases.split(","):
        for name, extra in CAPTURE_LOGINS.items():
            row = {"release": rel, "login_variant": name}
            for who in ("claude", "hap"):
                home = os.path.join(work, "capture", rel, name, who, "home")
                os.makedirs(home)
                servers.admin("/_admin/reset", {})
                oauth = {
                    "accessToken": "sk-ant-oat01-fake.parity-expired",
                    "refreshToken": "sk-ant-ort01-fake.parity-%s" % name,
                    "expiresAt": 1_700_000_000_000,
                    **extra,
                    "subscriptionType": SUBSCRIPTION,
                    "rateLimitTier": TIER,
                }
                # Probes: a key Claude Code does not know inside claudeAiOauth, and one at the
                # top level (what survives its write is recorded in credentials_after).
                oauth["hapProbeInnerKey"] = "kept?"
                planted = {"claudeAiOauth": oauth, "hapProbeTopLevel": {"kept": "?"}}
                if who == "claude":
                    row["login"] = planted
                creds = plant_login(home, servers, dict(oauth))[0]
                with open(creds, "w") as f:
                    json.dump(planted, f)
                env = {
                    "HOME": home,
                    "PATH": os.environ.get("PATH", ""),
                    "USER": "root",
                    "LANG": "C.UTF-8",
                }
                if who == "claude":
                    argv = [*claude_argv(rel, args.cache), "-p", "hi"]
                    env.update(NODE_EXTRA_CA_CERTS=servers.ca, **CLAUDE_ENV)
                    mark = (
                        os.path.getsize(servers.capture) if os.path.exists(servers.capture) else 0
                    )
                else:
                    argv = [
                        args.hap_bin,
                        "--no-pool",
                        "token",
                        "--json",
                        "--token-url",
                        servers.token_url,
                    ]
                    env["HAP_LOG"] = "off"
                p = Proc(who, argv, env, os.path.dirname(home), 0)
                p.wait(time.time() + args.timeout)
                log_ = servers.admin("/_admin/stats")["log"]
                if who == "claude":
                    with open(servers.capture) as f:
                        f.seek(mark)
                        caps = [json.loads(line) for line in f if line.strip()]
                    if len(caps) > 1:
                        die(
                            "%s %s: expected at most 1 token POST from Claude Code, saw %d"
                            % (rel, name, len(caps))
                        )
                    # None: this release does not refresh such a login at all (a finding).
                    row["claude_code_request"] = caps[0] if caps else None
                    with open(creds) as f:
                        text = f.read()
                    st = os.lstat(creds)
                    row["credentials_after"] = {
                        "text": text,
                        "mode": oct(st.st_mode & 0o777),
                        "answer_was": {
                            k: v for k, v in (log_[0] if log_ else {}).items() if k in ("status",)
                        },
                    }
                else:
                    if len(log_) != 1:
                        die(
                            "%s %s: expected 1 token POST from hap, saw %d" % (rel, name, len(log_))
                        )
                    row["hap_request_today"] = {
                        "headers": log_[0]["headers"],
                        "body": log_[0]["body"],
                    }
            req = row["claude_code_request"]
            body = json.loads(req["body"]) if req else {"no": "refresh POST"}
            log(
                "%s %-30s %s"
                % (rel, name, json.dumps({k: v for k, v in body.items() if k != "refresh_token"}))
            )
            path = os.path.join(out_dir, "%s-%s.json" % (rel, name))
            with open(path, "w") as f:
                json.dump(row, f, indent=1)
                f.write("\n")


def fmt_row(r):
    yn = lambda b: "yes" if b else "NO"  # noqa: E731
    return "%-7s %3d  %-13s %-3s %5d %4d %4d %6d   %-6s %-7s %-6s %-9s %-6s %s/%s  %5.1fs %s" % (
        r["release"],
        r["round"],
        r["scenario"],
        "yes" if r["overlapping"] else "no",
        r["posts"],
        r["hap_posts"],
        r["claude_posts"],
        r["invalid_grant"],
        "YES" if r["blanked"] else "no",
        yn(r["fields_intact"]),
        yn(r["hap_same_token"]),
        yn(r["pair_in_file_works"]),
        r["first_post_by"] or "-",
        r["claude_answered"],
        r["claude_processes"],
        r["secs"],
        "ok" if r["ok"] else "FAIL",
    )


HEADER = (
    "release round scenario  overlap POSTs  hap   cc inv_grant blanked fields hap_same pair_ok "
    "first  cc_ans  time   verdict"
)


def summary(results):
    out = []
    for rel in sorted({r["release"] for r in results}, reverse=True):
        rs = [r for r in results if r["release"] == rel]
        out.append(
            "%s: %d rounds (%d overlapping; %d hap + %d Claude Code processes), "
            "%d POSTs (%d hap, %d Claude Code), "
            "%d invalid_grant; rounds with exactly 1 POST: %d; with >1 POST: %d; blanked: %d; "
            "fields dropped: %d; hap processes disagreeing: %d rounds; pair in file dead: %d; "
            "Claude Code answered: %d/%d; failing rounds: %d"
            % (
                rel,
                len(rs),
                sum(1 for r in rs if r["overlapping"]),
                sum(r["hap_processes"] for r in rs),
                sum(r["claude_processes"] for r in rs),
                sum(r["posts"] for r in rs),
                sum(r["hap_posts"] for r in rs),
                sum(r["claude_posts"] for r in rs),
                sum(r["invalid_grant"] for r in rs),
                sum(1 for r in rs if r["posts"] == 1),
                sum(1 for r in rs if r["posts"] > 1),
                sum(1 for r in rs if r["blanked"]),
                sum(1 for r in rs if not r["fields_intact"]),
                sum(1 for r in rs if not r["hap_same_token"]),
                sum(1 for r in rs if not r["pair_in_file_works"]),
                sum(r["claude_answered"] for r in rs),
                sum(r["claude_processes"] for r in rs),
                sum(1 for r in rs if not r["ok"]),
            )
        )
        for sc in SCENARIOS:
            s = [r for r in rs if r["scenario"] == sc]
            if s:
                out.append(
                    "    %-13s %2d rounds: POSTs %s, invalid_grant %d"
                    % (
                        sc,
                        len(s),
                        "/".join(str(r["posts"]) for r in s),
                        sum(r["invalid_grant"] for r in s),
                    )
                )
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description="Claude Code vs hap refresh race (issue 12)")
    ap.add_argument("--releases", default="2.1.328,2.1.112", help="comma-separated")
    ap.add_argument("--rounds", type=int, default=30, help="rounds per release")
    ap.add_argument(
        "--scenarios",
        default="hap-first-12s,claude-first",
        help="comma-separated, rotated round by round: %s" % ", ".join(SCENARIOS),
    )
    ap.add_argument("--hap", type=int, default=4, help="hap processes per round")
    ap.add_argument("--claude", type=int, default=2, help="Claude Code processes per round")
    ap.add_argument(
        "--timeout",
        type=float,
        default=60,
        help="seconds per round; then every process left is killed",
    )
    ap.add_argument("--report-only", action="store_true", help="exit 0 whatever the rounds show")
    ap.add_argument("--json", help="write every round's result to this file")
    ap.add_argument("--keep", action="store_true", help="keep each round's HOME and outputs")
    ap.add_argument(
        "--claude-arg",
        action="append",
        default=[],
        help="extra argument for claude (repeatable), e.g. --claude-arg=--debug",
    )
    ap.add_argument(
        "--hap-arg",
        action="append",
        default=[],
        help="extra global argument for hap (repeatable), e.g. --hap-arg=--config=FILE.json",
    )
    ap.add_argument(
        "--no-extra-ca",
        action="store_true",
        help="check: without NODE_EXTRA_CA_CERTS Claude Code must fail TLS",
    )
    ap.add_argument(
        "--capture-dir",
        help="instead of racing, record the refresh POST of each "
        "login variant (Claude Code and hap) into this directory",
    )
    ap.add_argument("--cache", required=True)
    ap.add_argument("--hap-bin", required=True)
    args = ap.parse_args()
    scenarios = args.scenarios.split(",")
    for s in scenarios:
        if s not in SCENARIOS:
            die("unknown scenario %r (have %s)" % (s, ", ".join(SCENARIOS)))

    work = tempfile.mkdtemp(prefix="hap-interop-")
    setup_namespace(work)
    if args.capture_dir:
        servers = Servers(work, log_bodies=True, capture=os.path.join(work, "capture.jsonl"))
        try:
            capture(args, servers, work, os.path.abspath(args.capture_dir))
        finally:
            servers.close()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        return
    servers = Servers(work)
    results = []
    t0 = time.time()
    try:
        log(
            "work dir %s; fake token server %s; hosts -> 127.0.0.1: %s"
            % (work, servers.base, ", ".join(HOSTS[:4]) + ", ...")
        )
        log(HEADER)
        for rel in args.releases.split(","):
            for n in range(1, args.rounds + 1):
                sc = scenarios[(n - 1) % len(scenarios)]
                r = run_round(args, servers, rel, n, sc, work)
                results.append(r)
                log(fmt_row(r))
                if r["other_requests"] and n == 1:
                    log("        other requests seen: %s" % "; ".join(r["other_requests"]))
    finally:
        servers.close()
    log("")
    log(summary(results))
    log("elapsed %.0f s" % (time.time() - t0))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        log("kept %s" % work)
    bad = [r for r in results if not r["ok"]]
    if bad and not args.report_only:
        log(
            "FAIL: %d of %d rounds broke a rule (exactly 1 POST, no invalid_grant, file not "
            "blanked, fields intact, every hap process the same token); --report-only only "
            "reports" % (len(bad), len(results))
        )
        sys.exit(1)


def _exit_on_signal(signum, _frame):
    # race.py is the PID namespace's init (run): the kernel delivers it only the signals it
    # handles. Exiting (after the `finally` cleanups) ends the namespace, and the kernel
    # kills every Claude Code still in it.
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _exit_on_signal)
    main()
