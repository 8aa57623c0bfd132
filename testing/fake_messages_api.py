#!/usr/bin/env python3
"""Fake Anthropic Messages API for hap's adapter tests (stdlib only, Python 3.9+).

    python3 testing/fake_messages_api.py [--port 0] [--exit-on-stdin-eof]

Binds 127.0.0.1 only, prints the base URL (``http://127.0.0.1:PORT``) as its first stdout
line once listening, and serves until SIGTERM/SIGINT (or stdin EOF with
--exit-on-stdin-eof). It stands in for ``https://api.anthropic.com`` so that the real
official SDKs can be pointed at it with their ``base_url`` option.

``POST /v1/messages`` answers a minimal valid Message (``content: [{"type": "text", "text":
"ok"}]``) unless a scripted answer is queued. Every request is logged: what the adapters
under test must get right is in the headers, so the log records, per request, the
``sha256`` (first 16 hex) of the bearer token, whether ``x-api-key`` was present, the
``anthropic-beta`` value, ``x-stainless-retry-count`` and the path. Tokens themselves are
never logged or echoed.

Admin endpoints (JSON in, JSON out):

| request | effect |
|---|---|
| ``GET /_admin/stats`` | ``{"requests": N, "log": [...]}`` |
| ``POST /_admin/script`` ``{"answers": [A, ...]}`` | FIFO: each /v1/messages request takes one |
| ``POST /_admin/reject`` ``{"sha256": "<16 hex>"}`` | that bearer token answers 401 from now on |
| ``POST /_admin/reset`` | clears the log, the script and the rejected set |

An answer ``A`` is ``{"status": N, "headers": {...}, "body": {...}, "delay_ms": N}``; every key
is optional (a bare ``{}`` is a normal success). A scripted 401/429 without a body gets the
API's own error shape (``{"type": "error", "error": {"type": "authentication_error" |
"rate_limit_error", ...}}``).
"""

import argparse
import hashlib
import json
import os
import signal
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


def _fingerprint(token):
    return hashlib.sha256(token.encode("utf-8")).hexdigest()[:16]


def _message(model):
    return {
        "id": "msg_fake_01",
        "type": "message",
        "role": "assistant",
        "model": model or "claude-fake",
        "content": [{"type": "text", "text": "ok"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }


class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.reset_locked()

    def reset_locked(self):
        self.log = []
        self.script = []
        self.rejected = set()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-anthropic-messages/1"
    timeout = 120
    wbufsize = 1 << 16
    disable_nagle_algorithm = True

    def log_message(self, format, *args):
        pass

    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def _send(self, status, body, headers=None):
        data = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(str(k), str(v))
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def do_GET(self):
        self._body()
        if urllib.parse.urlsplit(self.path).path == "/_admin/stats":
            st = self.server.state
            with st.lock:
                self._send(200, {"requests": len(st.log), "log": [dict(e) for e in st.log]})
        else:
            self._send(404, {"type": "error", "error": {"type": "not_found_error"}})

    def do_POST(self):
        path = urllib.parse.urlsplit(self.path).path
        raw = self._body()
        st = self.server.state
        if path.startswith("/_admin/"):
            try:
                req = json.loads(raw or b"{}")
            except ValueError:
                req = None
            if not isinstance(req, dict):
                self._send(400, {"error": "invalid_request"})
                return
            with st.lock:
                if path == "/_admin/script" and isinstance(req.get("answers"), list):
                    st.script.extend(dict(a) for a in req["answers"])
                elif path == "/_admin/reject" and isinstance(req.get("sha256"), str):
                    st.rejected.add(req["sha256"])
                elif path == "/_admin/reset":
                    st.reset_locked()
                else:
                    self._send(400, {"error": "invalid_request"})
                    return
            self._send(200, {"ok": True})
            return
        if path != "/v1/messages":
            self._send(404, {"type": "error", "error": {"type": "not_found_error"}})
            return
        auth = self.headers.get("Authorization") or ""
        bearer = auth[7:] if auth.lower().startswith("bearer ") else None
        fp = _fingerprint(bearer) if bearer else None
        with st.lock:
            answer = st.script.pop(0) if st.script else {}
            entry = {
                "n": len(st.log) + 1,
                "path": path,
                "bearer_sha256": fp,
                "authorization_scheme": auth.split(" ", 1)[0] if auth else None,
                "x_api_key": self.headers.get("x-api-key") is not None,
                "anthropic_beta": self.headers.get("anthropic-beta"),
                "retry_count": self.headers.get("x-stainless-retry-count"),
                "t_ms": int(time.time() * 1000),
                "status": None,
            }
            st.log.append(entry)
            rejected = fp in st.rejected
        delay = answer.get("delay_ms")
        if isinstance(delay, (int, float)) and delay > 0:
            time.sleep(delay / 1000.0)
        if bearer is None or rejected:
            status, body, headers = 401, None, {}
        else:
            status = int(answer.get("status", 200))
            body = answer.get("body")
            headers = answer.get("headers") or {}
        if body is None:
            if status == 200:
                try:
                    model = json.loads(raw or b"{}").get("model")
                except (ValueError, AttributeError):
                    model = None
                body = _message(model)
            else:
                body = {
                    "type": "error",
                    "error": {"type": ERROR_TYPES.get(status, "api_error"), "message": "scripted"},
                }
        with st.lock:
            entry["status"] = status
        self._send(status, body, headers)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        pass


def main(argv=None):
    ap = argparse.ArgumentParser(description="Fake Anthropic Messages API (127.0.0.1 only)")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--exit-on-stdin-eof", action="store_true")
    args = ap.parse_args(argv)
    server = Server(("127.0.0.1", args.port), Handler)
    server.state = State()

    def _exit(*_):
        sys.stdout.flush()
        os._exit(0)

    signal.signal(signal.SIGTERM, _exit)
    signal.signal(signal.SIGINT, _exit)
    if args.exit_on_stdin_eof:

        def _watch():
            try:
                while sys.stdin.buffer.read(65536):
                    pass
            except (OSError, ValueError):
                pass
            _exit()

        threading.Thread(target=_watch, daemon=True).start()
    host, port = server.server_address[:2]
    sys.stdout.write("http://%s:%d\n" % (host, port))
    sys.stdout.flush()
    server.serve_forever(poll_interval=0.5)


if __name__ == "__main__":
    main()
