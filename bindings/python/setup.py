"""Build hook: put libhap inside the `hap_oauth` package of the wheel.

Everything else about the package lives in pyproject.toml. At build time the library comes from,
in order:

1. ``HAP_LIBRARY_PATH`` (absolute path of an already built ``libhap.so``): that file is bundled
   as it is and cargo is not run. CI sets it after its own ``cargo build --release``; it is the
   same variable the package reads at run time, with the same meaning ("this is libhap").
2. Otherwise ``cargo build --release --lib`` in the repository that holds this folder
   (``../../Cargo.toml``, or ``HAP_SOURCE_DIR``), and the cdylib cargo reports is bundled.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Distribution, setup
from setuptools.command.bdist_wheel import bdist_wheel
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
LIB_NAME = "libhap.dylib" if sys.platform == "darwin" else "libhap.so"


def _repo_root() -> Path:
    explicit = os.environ.get("HAP_SOURCE_DIR")
    candidates = [Path(explicit)] if explicit else [HERE.parent.parent]
    for root in candidates:
        if (root / "Cargo.toml").is_file():
            return root.resolve()
    raise SystemExit(
        "hap: cannot find the hap Rust crate (looked for "
        + ", ".join(str(c / "Cargo.toml") for c in candidates)
        + "). Build from a checkout of the hap repository, set HAP_SOURCE_DIR to it, "
        "or set HAP_LIBRARY_PATH to an already built libhap.so."
    )


def _cargo_build(root: Path) -> Path:
    """Run cargo and return the cdylib it reports (honours CARGO_TARGET_DIR and friends)."""
    cmd = ["cargo", "build", "--release", "--lib", "--message-format=json-render-diagnostics"]
    print(f"hap: running {' '.join(cmd)} in {root}", file=sys.stderr)
    try:
        proc = subprocess.run(cmd, cwd=root, stdout=subprocess.PIPE, check=False, text=True)
    except FileNotFoundError:
        raise SystemExit(
            "hap: `cargo` is not on PATH; install Rust (https://rustup.rs) or set "
            "HAP_LIBRARY_PATH to an already built libhap.so"
        ) from None
    if proc.returncode != 0:
        raise SystemExit(f"hap: cargo build failed with exit code {proc.returncode}")
    for line in proc.stdout.splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if msg.get("reason") != "compiler-artifact":
            continue
        if "cdylib" not in msg.get("target", {}).get("kind", []):
            continue
        for filename in msg.get("filenames", []):
            if Path(filename).name == LIB_NAME:
                return Path(filename)
    raise SystemExit(f"hap: cargo build succeeded but reported no {LIB_NAME} cdylib")


def _library() -> Path:
    prebuilt = os.environ.get("HAP_LIBRARY_PATH")
    if prebuilt:
        path = Path(prebuilt)
        if not path.is_absolute() or not path.is_file():
            raise SystemExit(
                f"hap: HAP_LIBRARY_PATH={prebuilt!r} is not an absolute path to a file"
            )
        print(f"hap: bundling HAP_LIBRARY_PATH={path} (cargo not run)", file=sys.stderr)
        return path
    return _cargo_build(_repo_root())


class BuildPyWithLibhap(build_py):
    def run(self) -> None:
        super().run()
        lib = _library()
        # An editable install imports hap_oauth/ from the source tree, so the library goes there.
        dest_dir = HERE / "hap_oauth" if self.editable_mode else Path(self.build_lib) / "hap_oauth"
        dest_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy2(lib, dest_dir / LIB_NAME)


class BinaryDistribution(Distribution):
    """The wheel carries a native library: a platform wheel whose files sit at its root."""

    def has_ext_modules(self) -> bool:
        return True


class PlatformWheel(bdist_wheel):
    """Tag ``py3-none-<platform>``: a native library for this platform but no extension
    module, so any Python 3 on that platform can load it."""

    def get_tag(self) -> tuple[str, str, str]:
        _, _, platform = super().get_tag()
        return "py3", "none", platform


setup(
    cmdclass={"build_py": BuildPyWithLibhap, "bdist_wheel": PlatformWheel},
    distclass=BinaryDistribution,
)
