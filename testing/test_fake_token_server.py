"""Tests of testing/fake_token_server.py against the contract in testing/README.md.

Every test talks to the real server, started as a subprocess, over real sockets.
Run from the repo root: python3 -m pytest -q testing/test_fake_token_server.py
"""

import hashlib
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time

import pytest

SERVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fake_token_server.py")
TOKEN_PATH = "/v1/oauth/token"
# FAKE_SERVER_PYTHON runs the server under another interpreter (e.g. to check Python 3.9).
PYTHON = os.environ.get("FAKE_SERVER_PYTHON") or sys.executable
CLIENT_ID = "9d1c250a-e61b-44d9-88ed-5944d1962f5e"


class Fake:
    """A running fake_token_server.py subprocess."""

    def __init__(self, *args):
        self.proc = subprocess.Popen(
            [PYTHON, SERVER, "--exit-on-stdin-eof", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        line = self.proc.stdout.readline().decode()
        m = re.fullmatch(r"http://127\.0\.0\.1:(\d+)\n", line)
        assert m, "unexpected first line %r" % line
        self.base = line.strip()
        self.port = int(m.group(1))

    def conn(self, timeout=5):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, conn=None, raw=False):
        c = conn or self.conn()
        hdrs = {"Content-Type": "application/json"}
        hdrs.update(headers or {})
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        c.request(method, path, body=body, headers=hdrs)
        resp = c.getresponse()
        data = resp.read()
        if conn is None:
            c.close()
        assert resp.getheader("Content-Type"), "Content-Type missing"
        assert resp.getheader("Content-Length") == str(len(data)), "Content-Length wrong"
        if raw:
            return resp, data
        return resp.status, (json.loads(data) if data else None)

    def refresh(self, refresh_token, **kw):
        body = {
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": CLIENT_ID,
        }
        return self.request("POST", TOKEN_PATH, body, **kw)

    def admin(self, name, body=None):
        status, out = self.request("POST", "/_admin/" + name, body if body is not None else {})
        assert status == 200, (name, status, out)
        return out

    def stats(self):
        status, out = self.request("GET", "/_admin/stats")
        assert status == 200
        return out

    def stop(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self.proc.stderr.close()


@pytest.fixture(scope="module")
def server():
    s = Fake()
    yield s
    s.stop()


@pytest.fixture
def fake(server):
    server.admin("reset")
    server.admin("config", {"expires_in": 3600})
    return server


def fp(token):
    return hashlib.sha256(token.encode()).hexdigest()[:16]


# ---------------------------------------------------------------- token endpoint


def test_success_shape_and_single_use(fake):
    status, body = fake.refresh("sk-ant-ort01-fake-r1")
    assert status == 200
    assert set(body) == {"token_type", "access_token", "refresh_token", "expires_in", "scope"}
    assert body["token_type"] == "Bearer"
    assert re.fullmatch(r"sk-ant-oat01-fake-\d+-[0-9a-f]{8}", body["access_token"])
    assert re.fullmatch(r"sk-ant-ort01-fake-\d+-[0-9a-f]{8}", body["refresh_token"])
    assert body["expires_in"] == 3600
    assert body["scope"] == "user:inference user:profile"

    # the presented token is spent
    status, err = fake.refresh("sk-ant-ort01-fake-r1")
    assert status == 400
    assert err == {
        "error": "invalid_grant",
        "error_description": "Refresh token not found or invalid",
    }

    # the new one works once
    status, body2 = fake.refresh(body["refresh_token"])
    assert status == 200
    assert body2["access_token"] != body["access_token"]
    assert fake.refresh(body["refresh_token"])[0] == 400

    st = fake.stats()
    assert (st["posts"], st["issued"], st["invalid_grant"]) == (4, 2, 2)


@pytest.mark.parametrize(
    "body",
    [
        {"refresh_token": "sk-ant-ort01-fake-r1", "client_id": CLIENT_ID},
        {"grant_type": "refresh_token", "client_id": CLIENT_ID},
        {"grant_type": "refresh_token", "refresh_token": "sk-ant-ort01-fake-r1"},
        {
            "grant_type": "authorization_code",
            "refresh_token": "sk-ant-ort01-fake-r1",
            "client_id": CLIENT_ID,
        },
        "not json{",
        "[1, 2]",
        "",
    ],
)
def test_invalid_request(fake, body):
    status, out = fake.request("POST", TOKEN_PATH, body)
    assert status == 400
    assert out == {"error": "invalid_request"}
    st = fake.stats()
    assert (st["posts"], st["invalid_request"], st["issued"]) == (1, 1, 0)
    # the token was not spent by the bad request
    assert fake.refresh("sk-ant-ort01-fake-r1")[0] == 200


def test_form_encoded_body_accepted(fake):
    body = "grant_type=refresh_token&refresh_token=sk-ant-ort01-fake-r1&client_id=c"
    status, out = fake.request(
        "POST", TOKEN_PATH, body, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert status == 200 and "refresh_token" in out


def test_chunked_request_body(fake):
    c = fake.conn()
    try:
        body = json.dumps(
            {
                "grant_type": "refresh_token",
                "refresh_token": "sk-ant-ort01-fake-r1",
                "client_id": "c",
            }
        ).encode()
        parts = iter([body[:10], body[10:]])
        c.request(
            "POST",
            TOKEN_PATH,
            body=parts,
            encode_chunked=True,
            headers={"Content-Type": "application/json"},
        )
        resp = c.getresponse()
        assert resp.status == 200 and "refresh_token" in json.loads(resp.read())
        assert (
            fake.refresh("sk-ant-ort01-fake-r1", conn=c)[0] == 400
        )  # same connection still in sync
    finally:
        c.close()


def test_not_found_paths(fake):
    for method, path in [
        ("POST", "/missing"),
        ("GET", "/missing"),
        ("GET", TOKEN_PATH),
        ("POST", "/v1/oauth/token/"),
        ("PUT", TOKEN_PATH),
        ("POST", "/_admin/nope"),
    ]:
        status, _ = fake.request(method, path, {"grant_type": "refresh_token"})
        assert status == 404, (method, path)
    assert fake.stats()["posts"] == 0


def test_query_string_ignored(fake):
    status, _ = fake.request(
        "POST",
        TOKEN_PATH + "?x=1",
        {"grant_type": "refresh_token", "refresh_token": "r", "client_id": "c"},
    )
    assert status == 200


def test_keep_alive_connection_reused(fake):
    c = fake.conn()
    try:
        rt = "sk-ant-ort01-fake-r1"
        sock = None
        for _ in range(3):
            status, body = fake.refresh(rt, conn=c)
            assert status == 200
            rt = body["refresh_token"]
            sock = sock or c.sock
        assert fake.request("POST", "/missing", {"a": "b" * 1000}, conn=c)[0] == 404
        assert fake.request("POST", TOKEN_PATH, "garbage", conn=c)[0] == 400
        assert fake.request("GET", "/_admin/stats", conn=c)[0] == 200
        assert fake.refresh(rt, conn=c)[0] == 200
        assert c.sock is sock  # one socket throughout: keep-alive never dropped
        # no Nagle/delayed-ACK stall (~40 ms each) on a reused connection
        t0 = time.monotonic()
        for _ in range(20):
            assert fake.request("GET", "/_admin/stats", conn=c)[0] == 200
        assert time.monotonic() - t0 < 0.5
    finally:
        c.close()


def test_http11_and_headers(fake):
    resp, data = fake.request("POST", "/missing", {}, raw=True)
    assert resp.version == 11
    assert resp.getheader("Content-Type") == "application/json"
    resp, data = fake.refresh("r", raw=True)
    assert resp.getheader("Content-Type") == "application/json"
    assert int(resp.getheader("Content-Length")) == len(data)


# ---------------------------------------------------------------- admin


def test_revoke_one(fake):
    issued = fake.admin("issue")
    fake.admin("revoke", {"refresh_token": issued["refresh_token"]})
    status, err = fake.refresh(issued["refresh_token"])
    assert status == 400 and err["error"] == "invalid_grant"
    # a never-seen token is revocable too
    fake.admin("revoke", {"refresh_token": "sk-ant-ort01-fake-r9"})
    assert fake.refresh("sk-ant-ort01-fake-r9")[0] == 400
    assert fake.refresh("sk-ant-ort01-fake-r8")[0] == 200


def test_revoke_all_then_new_login(fake):
    before = fake.admin("issue")
    fake.admin("revoke", {"all": True})
    assert fake.refresh(before["refresh_token"])[1]["error"] == "invalid_grant"
    assert fake.refresh("sk-ant-ort01-fake-r1")[1]["error"] == "invalid_grant"
    after = fake.admin("issue")  # a new login works
    status, body = fake.refresh(after["refresh_token"])
    assert status == 200
    assert fake.refresh(body["refresh_token"])[0] == 200
    fake.admin("reset")  # reset lifts the revocation
    assert fake.refresh("sk-ant-ort01-fake-r1")[0] == 200


def test_admin_bad_requests(fake):
    for name, body in [
        ("script", {"faults": "x"}),
        ("script", {"faults": [1]}),
        ("script", {"faults": [{"status": "abc"}]}),
        ("revoke", {}),
        ("config", {}),
        ("config", {"expires_in": "1"}),
        ("issue", {"expires_in": "1"}),
        ("reset", "not json{"),
    ]:
        status, _ = fake.request("POST", "/_admin/" + name, body)
        assert status == 400, (name, body)


def test_issue_and_config_expires_in(fake):
    body = fake.admin("issue")
    assert set(body) == {"token_type", "access_token", "refresh_token", "expires_in", "scope"}
    assert body["expires_in"] == 3600
    assert fake.admin("issue", {"expires_in": 5})["expires_in"] == 5
    fake.admin("config", {"expires_in": 42})
    assert fake.admin("issue")["expires_in"] == 42
    status, out = fake.refresh(body["refresh_token"])
    assert status == 200 and out["expires_in"] == 42
    # /_admin/issue is not a token-endpoint POST
    st = fake.stats()
    assert (st["posts"], st["issued"]) == (1, 1)


def test_reset(fake):
    rt = fake.refresh("sk-ant-ort01-fake-r1")[1]["refresh_token"]
    fake.refresh("sk-ant-ort01-fake-r1")
    fake.admin("revoke", {"refresh_token": rt})
    fake.admin("script", {"faults": [{"status": 500}]})
    fake.admin("reset")
    st = fake.stats()
    assert (
        st["posts"]
        == st["issued"]
        == st["invalid_grant"]
        == st["invalid_request"]
        == st["faults"]
        == 0
    )
    assert st["log"] == []
    # spent and revoked sets and the script queue are cleared
    assert fake.refresh("sk-ant-ort01-fake-r1")[0] == 200
    assert fake.refresh(rt)[0] == 200


def test_log_records_fingerprint_not_tokens(fake):
    issued = fake.admin("issue")
    status, body = fake.refresh(issued["refresh_token"], headers={"User-Agent": "hap/0.1.0"})
    assert status == 200
    fake.refresh(issued["refresh_token"])
    st = fake.stats()
    text = json.dumps(st)
    for tok in (
        issued["refresh_token"],
        issued["access_token"],
        body["refresh_token"],
        body["access_token"],
    ):
        assert tok not in text
    log = st["log"]
    assert [e["n"] for e in log] == [1, 2]
    assert [e["status"] for e in log] == [200, 400]
    e = log[0]
    assert {
        "n",
        "path",
        "status",
        "refresh_token_sha256",
        "client_id",
        "user_agent",
        "t_ms",
    } <= set(e)
    assert e["path"] == TOKEN_PATH
    assert e["refresh_token_sha256"] == fp(issued["refresh_token"])
    assert e["client_id"] == CLIENT_ID
    assert e["user_agent"] == "hap/0.1.0"
    assert abs(e["t_ms"] - time.time() * 1000) < 60000


def test_log_bodies_keeps_exact_headers_and_body():
    # Request-parity tests (issue 12) compare the exact POST hap sends with a captured
    # Claude Code one: with --log-bodies the log keeps each token POST's headers (names,
    # order, values as received) and raw body; without it neither key exists (above).
    s = Fake("--log-bodies")
    try:
        raw = (
            '{"grant_type":"refresh_token","refresh_token":"sk-ant-ort01-fake-b1",'
            '"client_id":"%s","scope":"user:inference user:profile"}' % CLIENT_ID
        )
        status, _ = s.request(
            "POST", TOKEN_PATH, raw, headers={"User-Agent": "axios/1.15.2", "X-Order": "last"}
        )
        assert status == 200
        s.request("POST", "/_admin/issue", {})  # admin calls are not logged
        log = s.stats()["log"]
        assert len(log) == 1
        assert log[0]["body"] == raw
        names = [k for k, _ in log[0]["headers"]]
        assert names.index("Content-Type") < names.index("User-Agent") < names.index("X-Order")
        assert ["User-Agent", "axios/1.15.2"] in log[0]["headers"]
        assert ["Content-Length", str(len(raw))] in log[0]["headers"]
    finally:
        s.stop()


def test_log_without_log_bodies_has_no_body_or_headers(fake):
    fake.refresh("sk-ant-ort01-fake-nb")
    e = fake.stats()["log"][0]
    assert "body" not in e and "headers" not in e


# ---------------------------------------------------------------- faults


def test_fault_status_with_body_and_headers_not_spent(fake):
    fake.admin(
        "script",
        {
            "faults": [
                {"status": 429, "headers": {"Retry-After": "7"}},
                {"status": 500, "body": "upstream <html> oops"},
                {"status": 400, "body": {"error": "invalid_client"}},
            ]
        },
    )
    resp, data = fake.refresh("sk-ant-ort01-fake-r1", raw=True)
    assert resp.status == 429 and resp.getheader("Retry-After") == "7"
    json.loads(data)
    resp, data = fake.refresh("sk-ant-ort01-fake-r1", raw=True)
    assert resp.status == 500 and data == b"upstream <html> oops"
    status, out = fake.refresh("sk-ant-ort01-fake-r1")
    assert status == 400 and out == {"error": "invalid_client"}
    assert fake.refresh("sk-ant-ort01-fake-r1")[0] == 200  # not spent by the faults
    st = fake.stats()
    assert (st["posts"], st["faults"], st["issued"]) == (4, 3, 1)
    assert [e["status"] for e in st["log"]] == [429, 500, 400, 200]


def test_fault_malformed(fake):
    fake.admin("script", {"faults": [{"malformed": True}]})
    resp, data = fake.refresh("sk-ant-ort01-fake-r1", raw=True)
    assert resp.status == 200 and data == b"not json{"
    assert fake.refresh("sk-ant-ort01-fake-r1")[0] == 200


def test_fault_oversize(fake):
    fake.admin("script", {"faults": [{"oversize": True}]})
    resp, data = fake.refresh("sk-ant-ort01-fake-r1", raw=True)
    assert resp.status == 200 and len(data) == 100 * 1024
    json.loads(data)
    assert fake.refresh("sk-ant-ort01-fake-r1")[0] == 200


def test_fault_omit_refresh_token(fake):
    fake.admin("script", {"faults": [{"omit_refresh_token": True}]})
    status, body = fake.refresh("sk-ant-ort01-fake-r1")
    assert status == 200 and "refresh_token" not in body and body["access_token"]
    # the presented refresh token stays valid
    assert fake.refresh("sk-ant-ort01-fake-r1")[0] == 200
    assert fake.refresh("sk-ant-ort01-fake-r1")[0] == 400


def test_fault_echo_refresh_token(fake):
    fake.admin("script", {"faults": [{"echo_refresh_token": True, "expires_in": 2}]})
    status, body = fake.refresh("sk-ant-ort01-fake-r1")
    assert status == 200 and body["refresh_token"] == "sk-ant-ort01-fake-r1"
    assert body["expires_in"] == 2 and body["access_token"]
    # not rotated, so not spent: it works once more, normally (and is spent then)
    assert fake.refresh("sk-ant-ort01-fake-r1")[0] == 200
    assert fake.refresh("sk-ant-ort01-fake-r1")[0] == 400


def test_fault_drip(fake):
    fake.admin("script", {"faults": [{"drip_ms": 2}]})
    c = fake.conn()
    t0 = time.monotonic()
    c.request(
        "POST",
        TOKEN_PATH,
        body=json.dumps(
            {
                "grant_type": "refresh_token",
                "refresh_token": "sk-ant-ort01-fake-r1",
                "client_id": CLIENT_ID,
            }
        ),
        headers={"Content-Type": "application/json"},
    )
    resp = c.getresponse()
    data = resp.read()
    c.close()
    assert resp.status == 200 and json.loads(data)["refresh_token"]
    # every byte (well over 200) waited 2 ms
    assert time.monotonic() - t0 > 0.4
    # a normal success: the presented token is spent
    assert fake.refresh("sk-ant-ort01-fake-r1")[0] == 400


def test_fault_drip_client_gone(fake):
    fake.admin("script", {"faults": [{"drip_ms": 20}]})
    body = json.dumps(
        {"grant_type": "refresh_token", "refresh_token": "sk-ant-ort01-fake-r1", "client_id": "c"}
    ).encode()
    s = socket.create_connection(("127.0.0.1", fake.port), timeout=5)
    s.sendall(
        b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (TOKEN_PATH.encode(), len(body), body)
    )
    assert s.recv(4) == b"H"  # one byte at a time
    s.close()
    # the dripping handler notices the closed socket; the server carries on serving
    time.sleep(0.2)
    assert fake.refresh("sk-ant-ort01-fake-r2")[0] == 200


def test_fault_expires_in(fake):
    fake.admin("script", {"faults": [{"expires_in": 1}]})
    status, body = fake.refresh("sk-ant-ort01-fake-r1")
    assert status == 200 and body["expires_in"] == 1
    assert fake.refresh("sk-ant-ort01-fake-r1")[0] == 400  # a normal success: spent
    assert fake.refresh(body["refresh_token"])[1]["expires_in"] == 3600  # one-shot


def test_fault_redirect(fake):
    fake.admin("script", {"faults": [{"redirect": fake.base + "/elsewhere"}]})
    resp, _ = fake.refresh("sk-ant-ort01-fake-r1", raw=True)
    assert resp.status == 307
    assert resp.getheader("Location") == fake.base + "/elsewhere"
    assert fake.refresh("sk-ant-ort01-fake-r1")[0] == 200


def test_fault_delay(fake):
    fake.admin("script", {"faults": [{"delay_ms": 300}, {"delay_ms": 200, "status": 503}]})
    t0 = time.monotonic()
    status, body = fake.refresh("sk-ant-ort01-fake-r1")
    assert status == 200 and time.monotonic() - t0 >= 0.29
    t0 = time.monotonic()
    assert fake.refresh(body["refresh_token"])[0] == 503
    assert time.monotonic() - t0 >= 0.19


def test_fault_hang(fake):
    fake.admin("script", {"faults": [{"hang_ms": 300}]})
    c = fake.conn(timeout=5)
    t0 = time.monotonic()
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
        fake.refresh("sk-ant-ort01-fake-r1", conn=c)
    assert time.monotonic() - t0 >= 0.29
    c.close()
    assert fake.refresh("sk-ant-ort01-fake-r1")[0] == 200  # not spent
    st = fake.stats()
    assert st["log"][0]["status"] == 0 and st["faults"] == 1 and st["posts"] == 2


def test_fault_hang_hits_client_timeout(fake):
    fake.admin("script", {"faults": [{"hang_ms": 1500}]})
    c = fake.conn(timeout=0.3)
    t0 = time.monotonic()
    with pytest.raises(OSError):  # socket.timeout is an OSError
        fake.refresh("sk-ant-ort01-fake-r1", conn=c)
    assert time.monotonic() - t0 < 1.0
    c.close()


def test_faults_fifo_then_normal(fake):
    fake.admin("script", {"faults": [{"status": 500}]})
    fake.admin("script", {"faults": [{"status": 502}, {}]})
    assert fake.stats()["pending_faults"] == 3
    codes = [fake.refresh("sk-ant-ort01-fake-r%d" % i)[0] for i in range(5)]
    assert codes == [500, 502, 200, 200, 200]
    assert fake.stats()["faults"] == 3


def test_fault_applies_to_invalid_request_bodies(fake):
    fake.admin("script", {"faults": [{"status": 503}]})
    assert fake.request("POST", TOKEN_PATH, "garbage")[0] == 503
    assert fake.request("POST", TOKEN_PATH, "garbage")[0] == 400


# ---------------------------------------------------------------- concurrency


def _concurrent(n, fn):
    barrier = threading.Barrier(n)
    results = [None] * n

    def run(i):
        barrier.wait()
        try:
            results[i] = fn(i)
        except Exception as e:
            results[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    return results


def test_stats_exact_under_30_concurrent_posts(fake):
    res = _concurrent(30, lambda i: fake.refresh("sk-ant-ort01-fake-c%d" % i)[0])
    assert res == [200] * 30
    st = fake.stats()
    assert (st["posts"], st["issued"], len(st["log"])) == (30, 30, 30)
    assert sorted(e["n"] for e in st["log"]) == list(range(1, 31))


def test_single_use_under_40_concurrent_posts(fake):
    issued = fake.admin("issue")
    fake.admin("script", {"faults": [{"delay_ms": 50}] * 5})
    res = _concurrent(40, lambda i: fake.refresh(issued["refresh_token"])[0])
    assert sorted(res) == [200] + [400] * 39, res
    st = fake.stats()
    assert (st["posts"], st["issued"], st["invalid_grant"], st["faults"]) == (40, 1, 39, 5)


# ---------------------------------------------------------------- separate processes


def test_strict_mode_and_cli_expires_in():
    s = Fake("--strict", "--expires-in", "120")
    try:
        status, err = s.refresh("sk-ant-ort01-fake-r1")
        assert status == 400 and err["error"] == "invalid_grant"
        issued = s.admin("issue")
        assert issued["expires_in"] == 120
        status, body = s.refresh(issued["refresh_token"])
        assert status == 200 and body["expires_in"] == 120
        assert s.refresh(issued["refresh_token"])[0] == 400
        assert s.refresh(body["refresh_token"])[0] == 200  # server-minted tokens are accepted
        st = s.stats()
        assert (st["posts"], st["issued"], st["invalid_grant"]) == (4, 2, 2)
    finally:
        s.stop()


def test_exit_on_stdin_eof_and_quiet():
    s = Fake()
    assert s.refresh("sk-ant-ort01-fake-r1")[0] == 200
    assert s.request("GET", "/missing")[0] == 404
    s.proc.stdin.close()
    assert s.proc.wait(5) == 0
    assert s.proc.stderr.read() == b""  # no per-request logging without --verbose
    assert s.proc.stdout.read() == b""  # exactly one stdout line
    s.stop()


def test_sigterm_exits():
    s = Fake()
    s.proc.terminate()
    assert s.proc.wait(5) == 0
    s.stop()


def test_verbose_logs_requests_but_no_tokens():
    s = Fake("--verbose")
    issued = s.admin("issue")
    assert s.refresh(issued["refresh_token"])[0] == 200
    s.proc.stdin.close()
    assert s.proc.wait(5) == 0
    err = s.proc.stderr.read().decode()
    assert "/v1/oauth/token" in err
    assert "sk-ant-" not in err
    s.stop()
