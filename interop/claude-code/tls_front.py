#!/usr/bin/env python3
"""TLS terminator standing in for Anthropic's hosts inside the interop namespace.

Listens on 127.0.0.1:443 with a certificate from the race's throwaway CA (trusted only by the
Claude Code processes the race starts, through NODE_EXTRA_CA_CERTS). It must only ever run
inside the private network namespace made by interop/claude-code/run, whose /etc/hosts maps
Anthropic's hosts to 127.0.0.1: nothing here can reach the real services.

- POST /v1/oauth/token (any host) is forwarded unchanged (body and headers) to hap's fake
  token server (testing/fake_token_server.py) over plain HTTP on loopback, and its answer is
  sent back unchanged.
- POST /v1/messages answers a minimal, valid Messages API reply (SSE when the request asks for
  a stream), so `claude -p hi` finishes after its refresh. A request whose bearer token is
  the round's planted, expired access token (read from --planted-file on every request)
  answers 401 authentication_error, as the real API does for an expired token.
- Anything else answers 404 {"error": "not_found"}.

Every request is appended to --log as one JSON line: time, host, method, path, user agent,
status and, for the Messages API, which token it carried (planted / other / none). Tokens
themselves are never logged, except with --capture (request-parity fixtures: fake tokens).
"""

import argparse
import http.client
import json
import os
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MESSAGE_TEXT = "hello from the hap interop fake"


def _sse(events):
    out = []
    for ev in events:
        out.append("event: %s\ndata: %s\n\n" % (ev["type"], json.dumps(ev)))
    return "".join(out).encode()


def _message(model):
    return {
        "id": "msg_fake_interop",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": MESSAGE_TEXT}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 1, "output_tokens": 5},
    }


def _stream(model):
    start = _message(model)
    start.update(content=[], stop_reason=None)
    return _sse(
        [
            {"type": "message_start", "message": start},
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": MESSAGE_TEXT},
            },
            {"type": "content_block_stop", "index": 0},
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": 5},
            },
            {"type": "message_stop"},
        ]
    )


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "hap-interop-front/1"

    def log_message(self, format, *args):
        pass

    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            return self.rfile.read(n)
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        return b""

    def _send(self, status, body, ctype="application/json", extra=None):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("request-id", "req_fake_interop")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _record(self, status, **kw):
        entry = {
            "t_ms": int(time.time() * 1000),
            "host": self.headers.get("Host"),
            "method": self.command,
            "path": self.path.split("?", 1)[0],
            "user_agent": self.headers.get("User-Agent"),
            "status": status,
        }
        entry.update(kw)
        line = json.dumps(entry) + "\n"
        with self.server.log_lock, open(self.server.log_path, "a") as f:
            f.write(line)

    def _planted(self):
        try:
            with open(self.server.planted_file) as f:
                return f.read().strip()
        except OSError:
            return ""

    def do_POST(self):
        path = self.path.split("?", 1)[0]
        body = self._body()
        if path == "/v1/oauth/token":
            if self.server.capture:
                # The exact request, for request-parity fixtures (the tokens are the fake
                # server's): header names and order as sent, and the raw body.
                rec = {
                    "request_line": self.requestline,
                    "headers": [[k, v] for k, v in self.headers.items()],
                    "body": body.decode("utf-8", "replace"),
                }
                with self.server.log_lock, open(self.server.capture, "a") as f:
                    f.write(json.dumps(rec) + "\n")
            self._forward(body)
        elif path == "/v1/messages":
            self._messages(body)
        else:
            self._send(404, {"error": "not_found"})
            self._record(404)

    def do_GET(self):
        self._body()
        self._send(404, {"error": "not_found"})
        self._record(404)

    do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET

    def _forward(self, body):
        host, port = self.server.backend
        conn = http.client.HTTPConnection(host, port, timeout=120)
        headers = {
            k: v
            for k, v in self.headers.items()
            if k.lower() not in ("host", "connection", "transfer-encoding", "content-length")
        }
        headers["Content-Length"] = str(len(body))
        try:
            conn.request("POST", "/v1/oauth/token", body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            status = resp.status
            ctype = resp.getheader("Content-Type") or "application/json"
        except OSError as e:
            self._send(502, {"error": "backend_unreachable"})
            self._record(502, error=type(e).__name__)
            return
        finally:
            conn.close()
        self._send(status, data, ctype)
        self._record(status, forwarded=True)

    def _messages(self, body):
        auth = self.headers.get("Authorization") or ""
        bearer = auth[7:] if auth.startswith("Bearer ") else ""
        planted = self._planted()
        which = "none" if not bearer else ("planted" if planted and bearer == planted else "other")
        try:
            req = json.loads(body or b"{}")
        except ValueError:
            req = {}
        if which == "planted" or which == "none":
            self._send(
                401,
                {
                    "type": "error",
                    "error": {
                        "type": "authentication_error",
                        "message": "OAuth token has expired. Please obtain a new token or "
                        "refresh your existing token.",
                    },
                },
            )
            self._record(401, token=which)
            return
        model = req.get("model") or "claude-fake"
        if req.get("stream"):
            self._send(200, _stream(model), "text/event-stream")
        else:
            self._send(200, _message(model))
        self._record(200, token=which)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument(
        "--backend", required=True, help="fake token server base URL, http://127.0.0.1:PORT"
    )
    ap.add_argument("--log", required=True)
    ap.add_argument("--planted-file", required=True)
    ap.add_argument("--port", type=int, default=443)
    ap.add_argument("--capture", help="append every token POST (headers + body) to this file")
    a = ap.parse_args()
    hostport = a.backend.split("://", 1)[1].rstrip("/")
    host, port = hostport.rsplit(":", 1)
    if host != "127.0.0.1":
        sys.exit("tls_front: the backend must be on 127.0.0.1")
    srv = Server(("127.0.0.1", a.port), Handler)
    srv.backend = (host, int(port))
    srv.log_path = a.log
    srv.log_lock = threading.Lock()
    srv.planted_file = a.planted_file
    srv.capture = a.capture
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(a.cert, a.key)
    # The handshake happens in the handler thread (first read), not in accept(): one slow
    # client must not stall the others.
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True, do_handshake_on_connect=False)
    print("ready", flush=True)
    # Die with the race: it holds our stdin open.
    threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
    srv.serve_forever()


if __name__ == "__main__":
    main()
