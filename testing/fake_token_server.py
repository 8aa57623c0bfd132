#!/usr/bin/env python3
"""Fake Anthropic OAuth token server for hap's test suites (stdlib only, Python 3.9+).

The contract is testing/README.md. Binds 127.0.0.1 only, prints the base URL as the first
stdout line once listening, and serves until SIGTERM/SIGINT (or stdin EOF with
--exit-on-stdin-eof). Tokens are never logged: the request log records only the first 16
hex digits of sha256(refresh_token), unless --log-bodies asks for each token POST's exact
headers and body (request-parity tests; the tokens are fake).
"""

import argparse
import hashlib
import json
import os
import secrets
import signal
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN_PATH = "/v1/oauth/token"
SCOPE = "user:inference user:profile"
INVALID_GRANT_BODY = {
    "error": "invalid_grant",
    "error_description": "Refresh token not found or invalid",
}
INVALID_REQUEST_BODY = {"error": "invalid_request"}
OVERSIZE_BYTES = 100 * 1024
MAX_REQUEST_BODY = 1024 * 1024


def _now_ms():
    return int(time.time() * 1000)


def _fingerprint(token):
    if not isinstance(token, str):
        return None
    return hashlib.sha256(token.encode("utf-8")).hexdigest()[:16]


def _oversize_body():
    prefix = b'{"padding": "'
    suffix = b'"}'
    return prefix + b"x" * (OVERSIZE_BYTES - len(prefix) - len(suffix)) + suffix


class State:
    """All shared state; every access holds self.lock."""

    def __init__(self, expires_in, strict):
        self.lock = threading.Lock()
        self.strict = strict
        self.expires_in = expires_in
        self.mint_counter = 0
        # Refresh tokens minted by this server (token endpoint or /_admin/issue): token -> mint seq.
        self.issued_tokens = {}
        self.reset_locked()

    def reset_locked(self):
        self.posts = 0
        self.issued = 0
        self.invalid_grant = 0
        self.invalid_request = 0
        self.faults = 0
        self.log = []
        self.script = []
        self.spent = set()
        self.revoked = set()
        # After {"all": true}: only refresh tokens minted with seq > revoked_all_seq are valid.
        self.revoked_all_seq = None

    def mint_locked(self, expires_in, with_refresh=True):
        self.mint_counter += 1
        n = self.mint_counter
        body = {
            "token_type": "Bearer",
            "access_token": "sk-ant-oat01-fake-%d-%s" % (n, secrets.token_hex(4)),
        }
        if with_refresh:
            refresh = "sk-ant-ort01-fake-%d-%s" % (n, secrets.token_hex(4))
            self.issued_tokens[refresh] = n
            body["refresh_token"] = refresh
        body["expires_in"] = expires_in
        body["scope"] = SCOPE
        return body

    def refresh_valid_locked(self, token):
        if token in self.spent or token in self.revoked:
            return False
        seq = self.issued_tokens.get(token)
        if self.revoked_all_seq is not None and (seq is None or seq <= self.revoked_all_seq):
            return False
        return not (self.strict and seq is None)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-anthropic-oauth/1"
    timeout = 120  # idle keep-alive connections are dropped after this many seconds
    # Headers and body leave in one segment (buffered wfile, flushed in _send) with Nagle off:
    # otherwise Nagle + delayed ACK add ~40 ms to every keep-alive request.
    wbufsize = 1 << 17
    disable_nagle_algorithm = True

    # ---------------------------------------------------------------- plumbing

    def version_string(self):
        return self.server_version

    @property
    def state(self):
        return self.server.state

    def log_message(self, format, *args):
        if self.server.verbose:
            sys.stderr.write(
                "fake_token_server: %s - %s\n" % (self.address_string(), format % args)
            )
            sys.stderr.flush()

    def _read_body(self):
        """Read the whole request body (Content-Length or chunked) so keep-alive stays in sync."""
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            chunks = []
            total = 0
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    self.close_connection = True
                    break
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    # trailers until an empty line
                    while True:
                        trailer = self.rfile.readline(65537)
                        if trailer in (b"\r\n", b"\n", b""):
                            break
                    break
                data = self.rfile.read(size)
                self.rfile.readline(3)  # CRLF after chunk
                total += len(data)
                if total > MAX_REQUEST_BODY:
                    self.close_connection = True
                    return b""
                chunks.append(data)
            return b"".join(chunks)
        length = self.headers.get("Content-Length")
        if not length:
            return b""
        try:
            n = int(length)
        except ValueError:
            self.close_connection = True
            return b""
        if n < 0 or n > MAX_REQUEST_BODY:
            self.close_connection = True
            return b""
        return self.rfile.read(n)

    def _send(self, status, body, headers=None):
        # A `drip_ms` fault of this request: the whole answer leaves one byte at a time.
        drip, self._drip = getattr(self, "_drip", None), None
        if isinstance(body, (bytes, bytearray)):
            data = bytes(body)
        elif isinstance(body, str):
            data = body.encode("utf-8")
        else:
            data = json.dumps(body).encode("utf-8")
        extra = dict(headers or {})
        ctype = "application/json"
        for k in list(extra):
            if k.lower() == "content-type":
                ctype = str(extra.pop(k))
            elif k.lower() in ("content-length", "transfer-encoding", "connection"):
                extra.pop(k)
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in extra.items():
            self.send_header(str(k), str(v))
        if self.close_connection:
            self.send_header("Connection", "close")
        if _is_num(drip) and drip > 0:
            self._headers_buffer.append(b"\r\n")
            out = b"".join(self._headers_buffer) + data
            self._headers_buffer = []
            for i in range(len(out)):
                try:
                    self.wfile.write(out[i : i + 1])
                    self.wfile.flush()
                except OSError:
                    self.close_connection = True
                    return
                time.sleep(drip / 1000.0)
            return
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        self.wfile.flush()

    def _path(self):
        return urllib.parse.urlsplit(self.path).path

    @staticmethod
    def _parse_json(raw):
        if not raw.strip():
            return {}
        try:
            return json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            return None

    # ---------------------------------------------------------------- methods

    def do_GET(self):
        self._read_body()
        if self._path() == "/_admin/stats":
            st = self.state
            with st.lock:
                body = {
                    "posts": st.posts,
                    "issued": st.issued,
                    "invalid_grant": st.invalid_grant,
                    "invalid_request": st.invalid_request,
                    "faults": st.faults,
                    "pending_faults": len(st.script),
                    "log": [dict(e) for e in st.log],
                }
            self._send(200, body)
        else:
            self._not_found()

    def do_POST(self):
        path = self._path()
        if path == TOKEN_PATH:
            self._token()
        elif path.startswith("/_admin/"):
            self._admin(path)
        else:
            self._read_body()
            self._not_found()

    def _other(self):
        self._read_body()
        self._not_found()

    do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _other

    def _not_found(self):
        self._send(404, {"error": "not_found"})

    # ---------------------------------------------------------------- admin

    def _admin(self, path):
        raw = self._read_body()
        req = self._parse_json(raw)
        if not isinstance(req, dict):
            self._send(400, INVALID_REQUEST_BODY)
            return
        st = self.state
        if path == "/_admin/script":
            faults = req.get("faults")
            if not isinstance(faults, list) or not all(_valid_fault(f) for f in faults):
                self._send(
                    400,
                    {
                        "error": "invalid_request",
                        "error_description": "faults must be a list of objects",
                    },
                )
                return
            with st.lock:
                st.script.extend(dict(f) for f in faults)
                queued = len(st.script)
            self._send(200, {"ok": True, "queued": queued})
        elif path == "/_admin/revoke":
            if req.get("all") is True:
                with st.lock:
                    st.revoked_all_seq = st.mint_counter
                self._send(200, {"ok": True})
            elif isinstance(req.get("refresh_token"), str):
                with st.lock:
                    st.revoked.add(req["refresh_token"])
                self._send(200, {"ok": True})
            else:
                self._send(400, INVALID_REQUEST_BODY)
        elif path == "/_admin/issue":
            exp = req.get("expires_in")
            if exp is not None and not _is_int(exp):
                self._send(400, INVALID_REQUEST_BODY)
                return
            with st.lock:
                body = st.mint_locked(st.expires_in if exp is None else exp)
            self._send(200, body)
        elif path == "/_admin/config":
            exp = req.get("expires_in")
            if not _is_int(exp):
                self._send(400, INVALID_REQUEST_BODY)
                return
            with st.lock:
                st.expires_in = exp
            self._send(200, {"ok": True, "expires_in": exp})
        elif path == "/_admin/reset":
            with st.lock:
                st.reset_locked()
            self._send(200, {"ok": True})
        else:
            self._not_found()

    # ---------------------------------------------------------------- token endpoint

    def _token(self):
        t_ms = _now_ms()
        raw = self._read_body()
        req = self._parse_json(raw)
        if not isinstance(req, dict) and "x-www-form-urlencoded" in (
            self.headers.get("Content-Type") or ""
        ):
            try:
                req = {k: v[-1] for k, v in urllib.parse.parse_qs(raw.decode("utf-8")).items()}
            except UnicodeDecodeError:
                req = None
        if not isinstance(req, dict):
            req = None
        refresh = req.get("refresh_token") if req else None
        client_id = req.get("client_id") if req else None
        st = self.state
        with st.lock:
            st.posts += 1
            fault = st.script.pop(0) if st.script else None
            if fault is not None:
                st.faults += 1
            entry = {
                "n": st.posts,
                "path": self._path(),
                "status": None,
                "refresh_token_sha256": _fingerprint(refresh),
                "client_id": client_id if isinstance(client_id, str) else None,
                "user_agent": self.headers.get("User-Agent"),
                "t_ms": t_ms,
                "fault": _fault_kind(fault),
            }
            if getattr(self.server, "log_bodies", False):
                entry["headers"] = [[k, v] for k, v in self.headers.items()]
                entry["body"] = raw.decode("utf-8", "replace")
            st.log.append(entry)

        fault = fault or {}
        self._drip = fault.get("drip_ms")
        delay = fault.get("delay_ms")
        if _is_num(delay) and delay > 0:
            time.sleep(delay / 1000.0)

        hang = fault.get("hang_ms")
        if _is_num(hang):
            if hang > 0:
                time.sleep(hang / 1000.0)
            self.close_connection = True
            with st.lock:
                entry["status"] = 0
            return
        if "redirect" in fault:
            self._finish(entry, 307, {"error": "redirect"}, {"Location": str(fault["redirect"])})
            return
        if "status" in fault:
            body = fault.get("body")
            if body is None:
                body = {"error": "scripted_fault"}
            headers = fault.get("headers") if isinstance(fault.get("headers"), dict) else None
            self._finish(entry, fault["status"], body, headers)
            return
        if fault.get("malformed"):
            self._finish(entry, 200, b"not json{")
            return
        if fault.get("oversize"):
            self._finish(entry, 200, _oversize_body())
            return

        # Normal behaviour (optionally with omit_refresh_token / expires_in).
        if (
            req is None
            or req.get("grant_type") != "refresh_token"
            or not isinstance(refresh, str)
            or not refresh
            or not isinstance(client_id, str)
            or not client_id
        ):
            with st.lock:
                st.invalid_request += 1
            self._finish(entry, 400, INVALID_REQUEST_BODY)
            return
        omit = bool(fault.get("omit_refresh_token"))
        echo = bool(fault.get("echo_refresh_token"))
        exp = fault.get("expires_in")
        with st.lock:
            if not st.refresh_valid_locked(refresh):
                st.invalid_grant += 1
                body, status = INVALID_GRANT_BODY, 400
            else:
                if not (omit or echo):
                    st.spent.add(refresh)
                st.issued += 1
                body = st.mint_locked(
                    exp if _is_int(exp) else st.expires_in, with_refresh=not (omit or echo)
                )
                if echo:
                    # A server that does not rotate: the same refresh token comes back.
                    body["refresh_token"] = refresh
                status = 200
        self._finish(entry, status, body)

    def _finish(self, entry, status, body, headers=None):
        with self.state.lock:
            entry["status"] = status
        self._send(status, body, headers)


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _valid_fault(f):
    if not isinstance(f, dict):
        return False
    status = f.get("status", 200)
    return _is_int(status) and 100 <= status <= 599


def _fault_kind(fault):
    if fault is None:
        return None
    return ",".join(sorted(fault.keys())) or "none"


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def handle_error(self, request, client_address):
        # Clients that vanish mid-request are normal in these tests; stay quiet.
        if self.verbose:
            super().handle_error(request, client_address)


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="Fake Anthropic OAuth token server (testing/README.md)"
    )
    ap.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0 = any free port)")
    ap.add_argument("--expires-in", type=int, default=3600, help="default expires_in of successes")
    ap.add_argument(
        "--strict", action="store_true", help="accept only refresh tokens this server issued"
    )
    ap.add_argument(
        "--exit-on-stdin-eof",
        action="store_true",
        help="exit when stdin closes (dies with the test that started it)",
    )
    ap.add_argument("--verbose", action="store_true", help="log requests to stderr (never tokens)")
    ap.add_argument(
        "--log-bodies",
        action="store_true",
        help="keep each token POST's headers and raw body in /_admin/stats (holds tokens)",
    )
    args = ap.parse_args(argv)

    server = Server(("127.0.0.1", args.port), Handler)
    server.state = State(args.expires_in, args.strict)
    server.verbose = args.verbose
    server.log_bodies = args.log_bodies

    def _exit(*_):
        sys.stdout.flush()
        os._exit(0)

    signal.signal(signal.SIGTERM, _exit)
    signal.signal(signal.SIGINT, _exit)

    if args.exit_on_stdin_eof:

        def _watch_stdin():
            try:
                while sys.stdin.buffer.read(65536):
                    pass
            except (OSError, ValueError):
                pass
            _exit()

        threading.Thread(target=_watch_stdin, name="stdin-eof", daemon=True).start()

    host, port = server.server_address[:2]
    sys.stdout.write("http://%s:%d\n" % (host, port))
    sys.stdout.flush()
    server.serve_forever(poll_interval=0.5)


if __name__ == "__main__":
    main()
