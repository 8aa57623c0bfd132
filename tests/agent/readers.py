#!/usr/bin/env python3
"""Readers for tests/agent.rs (issue 15). Each sets up, prints ``{"ready": true}``, waits
until the file GO exists (it holds the epoch ms to stop at), then uses a token every EVERY_MS
until then, printing one JSON line per use, never the token itself:
``{"kind", "sha" (sha256 of the token, 16 hex), "t_ms", "expires_at_ms"}`` or
``{"kind", "t_ms", "error"}``.

    readers.py socket  SOCKET MIN_VALIDITY_MS GO EVERY_MS   # raw newline-delimited JSON
    readers.py binding CONFIG_JSON GO EVERY_MS              # the ctypes binding, HAP_LIBRARY_PATH
    readers.py sdk     PROFILE BASE_URL GO EVERY_MS         # the real anthropic SDK, profile=
"""

import hashlib
import json
import os
import socket
import sys
import time


def sha(token):
    return hashlib.sha256(token.encode("utf-8")).hexdigest()[:16]


def now_ms():
    return int(time.time() * 1000)


def emit(**kw):
    sys.stdout.write(json.dumps(kw) + "\n")
    sys.stdout.flush()


def loop(kind, go, every_ms, once):
    emit(kind=kind, ready=True)
    while True:
        try:
            with open(go) as f:
                end_ms = int(f.read().strip())
            break
        except (OSError, ValueError):
            time.sleep(0.02)
    while now_ms() < end_ms:
        try:
            once()
        except Exception as e:
            emit(kind=kind, t_ms=now_ms(), error=type(e).__name__, message=str(e)[:200])
        time.sleep(every_ms / 1000.0)


def socket_reader(path, min_validity_ms, go, every_ms):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    f = s.makefile("rwb")
    req = json.dumps({"op": "resolve", "min_validity_ms": int(min_validity_ms)}).encode() + b"\n"

    def once():
        f.write(req)
        f.flush()
        answer = json.loads(f.readline())
        if not answer["ok"]:
            emit(kind="socket", t_ms=now_ms(), error=answer["error"]["name"])
            return
        r = answer["result"]
        # What the socket hands out must never include a refresh token.
        assert set(r) == {
            "access_token",
            "credential_id",
            "label",
            "source",
            "auth_type",
            "expires_at_ms",
            "refreshed",
        }, sorted(r)
        emit(
            kind="socket",
            sha=sha(r["access_token"]),
            t_ms=now_ms(),
            expires_at_ms=r["expires_at_ms"],
            refreshed=r["refreshed"],
        )

    loop("socket", go, every_ms, once)


def binding_reader(config, go, every_ms):
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bindings", "python"))
    import hap_oauth as hap  # type: ignore[import-not-found]
    cfg = json.loads(config)
    kind = "python-agent" if cfg.get("agent", "off") != "off" else "python"
    pool = hap.Pool(cfg)

    def once():
        t = pool.resolve_token()
        emit(
            kind=kind,
            sha=sha(t.access_token),
            t_ms=now_ms(),
            expires_at_ms=t.expires_at_ms,
            refreshed=t.refreshed,
        )

    loop(kind, go, every_ms, once)


def sdk_reader(profile, base_url, go, every_ms):
    import anthropic

    client = anthropic.Anthropic(profile=profile, base_url=base_url, max_retries=0)

    def once():
        m = client.messages.create(
            model="claude-fake", max_tokens=1, messages=[{"role": "user", "content": "hi"}]
        )
        # The token itself is judged by the fake Messages API's log (what was sent).
        emit(kind="sdk", t_ms=now_ms(), ok=m.content[0].text == "ok")

    loop("sdk", go, every_ms, once)


def main(argv):
    mode = argv[1]
    if mode == "socket":
        socket_reader(argv[2], argv[3], argv[4], int(argv[5]))
    elif mode == "binding":
        binding_reader(argv[2], argv[3], int(argv[4]))
    elif mode == "sdk":
        sdk_reader(argv[2], argv[3], argv[4], int(argv[5]))
    else:
        raise SystemExit("unknown mode " + mode)


if __name__ == "__main__":
    main(sys.argv)
