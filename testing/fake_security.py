#!/usr/bin/env python3
"""A fake macOS `/usr/bin/security` for hap's Keychain store tests (tests/keychain.rs).

Only what Claude Code 2.1.328 (and hap) run, with the real program's exit statuses:

  find-generic-password -a ACCOUNT -w -s SERVICE   prints the password and a newline;
                                                   exit 44 when there is no such item
  -i                                               reads commands from standard input, one
                                                   a line; `add-generic-password -U -a A -s S
                                                   -X HEX` stores the bytes HEX encodes
  add-generic-password -U -a A -s S -X HEX         the same in argv (what hap never does)
  delete-generic-password -a A -s S                exit 44 when there is no such item

State lives in a directory: $FAKE_SECURITY_DIR, else the directory of the path this program
was run as (tests symlink it as `<dir>/security`, no environment needed):

  keychain.json   {"items": [{"account": A, "service": S, "password": TEXT}]}
  locked          when present, every command exits 36 (errSecInteractionNotAllowed)
  locked_add      when present, `add-generic-password` exits 36 (locked while reading works)
  sleep           when present, seconds to sleep before answering (a Keychain prompt)
  fail_add        when present, `add-generic-password` exits 0 and stores nothing (a
                  `security -i` that swallows a failed command)
  log.jsonl       one line per run: {"argv": [...], "stdin": "..."} (a test checks that
                  no secret ever reaches argv)
"""

import fcntl
import json
import os
import shlex
import sys
import time

NO_ITEM = 44
LOCKED = 36


def state_dir():
    d = os.environ.get("FAKE_SECURITY_DIR")
    return d or os.path.dirname(os.path.abspath(sys.argv[0]))


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return {"items": []}


def save(path, kc):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(kc, f)
    os.replace(tmp, path)


def opts(args):
    """-a/-s/-X values and flags of one command."""
    out = {}
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("-w", "-U"):
            out[a] = True
            i += 1
        elif a in ("-a", "-s", "-X") and i + 1 < len(args):
            out[a] = args[i + 1]
            i += 2
        else:
            i += 1
    return out


def find(kc, account, service):
    for item in kc["items"]:
        if item["account"] == account and item["service"] == service:
            return item
    return None


def command(d, kc_path, args):
    """Runs one command; returns its exit status."""
    if not args:
        return 1
    if os.path.exists(os.path.join(d, "locked")):
        sys.stderr.write("security: User interaction is not allowed.\n")
        return LOCKED
    name, o = args[0], opts(args[1:])
    kc = load(kc_path)
    if name == "find-generic-password":
        item = find(kc, o.get("-a"), o.get("-s"))
        if item is None:
            sys.stderr.write(
                "security: SecKeychainSearchCopyNext: The specified item could not be "
                "found in the keychain.\n"
            )
            return NO_ITEM
        if o.get("-w"):
            sys.stdout.write(item["password"] + "\n")
        return 0
    if name == "add-generic-password":
        if os.path.exists(os.path.join(d, "locked_add")):
            sys.stderr.write("security: User interaction is not allowed.\n")
            return LOCKED
        if os.path.exists(os.path.join(d, "fail_add")):
            return 0
        password = bytes.fromhex(o.get("-X", "")).decode()
        item = find(kc, o.get("-a"), o.get("-s"))
        if item is not None and not o.get("-U"):
            return 45  # errSecDuplicateItem
        if item is None:
            new = {"account": o.get("-a"), "service": o.get("-s"), "password": password}
            kc["items"].append(new)
        else:
            item["password"] = password
        save(kc_path, kc)
        return 0
    if name == "delete-generic-password":
        item = find(kc, o.get("-a"), o.get("-s"))
        if item is None:
            return NO_ITEM
        kc["items"].remove(item)
        save(kc_path, kc)
        return 0
    sys.stderr.write("fake security: unknown command %r\n" % name)
    return 1


def main():
    d = state_dir()
    kc_path = os.path.join(d, "keychain.json")
    args = sys.argv[1:]
    stdin = sys.stdin.read() if args == ["-i"] else ""
    with open(os.path.join(d, "log.jsonl"), "a") as log:
        fcntl.flock(log, fcntl.LOCK_EX)
        log.write(json.dumps({"argv": sys.argv[1:], "stdin": stdin}) + "\n")
    sleep = os.path.join(d, "sleep")
    if os.path.exists(sleep):
        with open(sleep) as f:
            time.sleep(float(f.read().strip() or "0"))
    # One process at a time changes the keychain, as securityd serialises them.
    with open(kc_path + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if args == ["-i"]:
            rc = 0
            for line in stdin.splitlines():
                if line.strip():
                    rc = command(d, kc_path, shlex.split(line))
            return rc
        return command(d, kc_path, args)


if __name__ == "__main__":
    sys.exit(main())
