#!/usr/bin/env python3
"""Extracts the JavaScript embedded in a Bun-compiled executable (Claude Code 2.1.128+ ships
as one), so its code can be read and grepped like cli.js. Works on the Linux (ELF) and macOS
(Mach-O) binaries: it finds Bun's trailer "\\n---- Bun! ----\\n" and walks the module graph
before it (Bun's StandaloneModuleGraph: a table of 52-byte entries of (offset, length) string
pointers: name, contents, sourcemap, bytecode, module info, bytecode origin, then 4 flag bytes).

    python3 extract_bun.py ~/.cache/hap-ci/claude-code/2.1.328/package/claude OUTDIR

writes every module to OUTDIR/<name> (chunk-*.js, the entry point "cli", assets) and prints
the entry point's name. Offsets quoted in FINDINGS.md are byte offsets into these files.
"""

import os
import struct
import sys

TRAILER = b"\n---- Bun! ----\n"


def main():
    exe, out = sys.argv[1], sys.argv[2]
    with open(exe, "rb") as f:
        data = f.read()
    end = data.rfind(TRAILER)
    if end < 0:
        sys.exit("no Bun trailer: not a Bun-compiled executable")
    byte_count, mod_off, mod_len, entry = struct.unpack_from("<QIII", data, end - 32)
    start = end + len(TRAILER) - (byte_count + 48)
    payload = data[start : end + len(TRAILER)]
    n = mod_len // 52
    os.makedirs(out, exist_ok=True)
    entry_name = None
    for i in range(n):
        f = struct.unpack_from("<12I4B", payload, mod_off + i * 52)
        name = payload[f[0] : f[0] + f[1]].decode()
        body = payload[f[2] : f[2] + f[3]]
        rel = name.split("/$bunfs/root/", 1)[-1].lstrip("/")
        path = os.path.join(out, rel)
        os.makedirs(os.path.dirname(path) or out, exist_ok=True)
        with open(path, "wb") as w:
            w.write(body)
        if i == entry:
            entry_name = rel
    print("%d modules; entry point %s" % (n, entry_name))


if __name__ == "__main__":
    main()
