"""``python -m hap_oauth status``: print the pool's status JSON (no secrets). Also ``version``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def _config(args: argparse.Namespace) -> dict[str, Any]:
    config: dict[str, Any] = {}
    if args.config:
        text = args.config
        if not text.lstrip().startswith("{"):
            text = Path(text).expanduser().read_text(encoding="utf-8")
        loaded = json.loads(text)
        if not isinstance(loaded, dict):
            raise SystemExit("hap: --config must be a JSON object")
        config.update(loaded)
    for key in ("provider", "pool_path", "credentials_path"):
        value = getattr(args, key)
        if value is not None:
            config[key] = value
    return config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hap_oauth", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    status = sub.add_parser("status", help="print the pool status as JSON")
    status.add_argument(
        "--config", help="pool config: a JSON object, or the path of a file holding one"
    )
    status.add_argument("--provider", help="pool key in the pool file (default anthropic)")
    status.add_argument("--pool-path", dest="pool_path", help="Hermes auth.json")
    status.add_argument(
        "--credentials-path", dest="credentials_path", help="Claude Code .credentials.json"
    )
    sub.add_parser("version", help="print package, library and ABI versions")
    args = parser.parse_args(argv)

    import hap_oauth as hap

    if args.command == "version":
        major, minor = hap.abi_version()
        print(f"hap (python) {hap.__version__}")
        print(f"{hap.library_version()} at {hap.library_path()} (abi {major}.{minor})")
        return 0

    try:
        with hap.Pool(_config(args)) as pool:
            print(json.dumps(pool.status(), indent=2))
    except hap.HapError as exc:
        print(f"hap: {exc.name}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
