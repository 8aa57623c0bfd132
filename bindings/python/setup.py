"""Build hook: put libhap inside the `hap_oauth` package of the wheel, and the crate in the sdist.

Everything else about the package lives in pyproject.toml. At wheel build time the library comes
from, in order:

1. ``HAP_LIBRARY_PATH`` (absolute path of an already built ``libhap.so``): that file is bundled
   as it is and cargo is not run. CI and scripts/dist set it (scripts/dist to the size-optimised
   manylinux build); it is the same variable the package reads at run time, with the same
   meaning ("this is libhap").
2. Otherwise ``cargo build --release --lib`` on the crate: ``rust/`` beside this file in an
   sdist, else ``HAP_SOURCE_DIR``, else the repository that holds this folder
   (``../../Cargo.toml``); the cdylib cargo reports is bundled.

The sdist carries the crate in ``rust/``, exactly as ``cargo package`` cuts it for crates.io, so
``pip install hap_oauth-X.tar.gz`` builds anywhere a Rust toolchain is installed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from setuptools import Distribution, setup
from setuptools.command.bdist_wheel import bdist_wheel
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

HERE = Path(__file__).resolve().parent
LIB_NAME = "libhap.dylib" if sys.platform == "darwin" else "libhap.so"
SDIST_CRATE = "rust"


def _crate_dir() -> Path:
    explicit = os.environ.get("HAP_SOURCE_DIR")
    candidates = [HERE / SDIST_CRATE]
    candidates += [Path(explicit)] if explicit else [HERE.parent.parent]
    for root in candidates:
        if (root / "Cargo.toml").is_file():
            return root.resolve()
    raise SystemExit(
        "hap-oauth: cannot find the hap-oauth Rust crate (looked for "
        + ", ".join(str(c / "Cargo.toml") for c in candidates)
        + "). Build from the sdist or a checkout of the hap repository, set HAP_SOURCE_DIR to "
        "one, or set HAP_LIBRARY_PATH to an already built libhap.so."
    )


def _cargo(args: list[str], cwd: Path, stdout: int) -> subprocess.CompletedProcess[str]:
    cmd = ["cargo", *args]
    print(f"hap-oauth: running {' '.join(cmd)} in {cwd}", file=sys.stderr)
    try:
        proc = subprocess.run(cmd, cwd=cwd, stdout=stdout, check=False, text=True)
    except FileNotFoundError:
        raise SystemExit(
            "hap-oauth: `cargo` is not on PATH; install Rust (https://rustup.rs), install the "
            "prebuilt wheel instead of the sdist (pip install hap-oauth on a manylinux x86_64 "
            "machine picks it), or set HAP_LIBRARY_PATH to an already built libhap.so"
        ) from None
    if proc.returncode != 0:
        raise SystemExit(f"hap-oauth: {' '.join(cmd)} failed with exit code {proc.returncode}")
    return proc


def _cargo_build(root: Path) -> Path:
    """Run cargo and return the cdylib it reports (honours CARGO_TARGET_DIR and friends)."""
    args = ["build", "--release", "--lib", "--message-format=json-render-diagnostics"]
    if (root / "Cargo.lock").is_file():
        args.append("--locked")
    proc = _cargo(args, root, stdout=subprocess.PIPE)
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
    raise SystemExit(f"hap-oauth: cargo build succeeded but reported no {LIB_NAME} cdylib")


def _library() -> Path:
    prebuilt = os.environ.get("HAP_LIBRARY_PATH")
    if prebuilt:
        path = Path(prebuilt)
        if not path.is_absolute() or not path.is_file():
            raise SystemExit(
                f"hap-oauth: HAP_LIBRARY_PATH={prebuilt!r} is not an absolute path to a file"
            )
        print(f"hap-oauth: bundling HAP_LIBRARY_PATH={path} (cargo not run)", file=sys.stderr)
        return path
    return _cargo_build(_crate_dir())


def _write_crate(dest: Path) -> None:
    """Put the crate into ``dest``: a copy of ``rust/`` when this is already an sdist, else
    what ``cargo package`` cuts from the checkout (the file list crates.io would get)."""
    if (HERE / SDIST_CRATE / "Cargo.toml").is_file():
        shutil.copytree(HERE / SDIST_CRATE, dest)
        return
    root = _crate_dir()
    with tempfile.TemporaryDirectory(prefix="hap-oauth-sdist-") as tmp:
        # --no-verify: the wheel build (or pip install of this sdist) compiles it anyway.
        _cargo(
            ["package", "--no-verify", "--allow-dirty", "--locked", "--target-dir", tmp],
            root,
            stdout=subprocess.DEVNULL,
        )
        crates = list((Path(tmp) / "package").glob("*.crate"))
        if len(crates) != 1:
            raise SystemExit(f"hap-oauth: cargo package left {crates}, expected one .crate")
        with tarfile.open(crates[0]) as tar:
            members = tar.getmembers()
            top = members[0].name.split("/")[0]
            for member in members:
                if not member.isfile():
                    continue
                rel = Path(member.name).relative_to(top)
                target = dest / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                data = tar.extractfile(member)
                if data is None:
                    raise SystemExit(f"hap-oauth: cannot read {member.name} from {crates[0]}")
                with data, open(target, "wb") as out:
                    shutil.copyfileobj(data, out)


class BuildPyWithLibhap(build_py):
    def run(self) -> None:
        super().run()
        lib = _library()
        # An editable install imports hap_oauth/ from the source tree, so the library goes there.
        dest_dir = HERE / "hap_oauth" if self.editable_mode else Path(self.build_lib) / "hap_oauth"
        dest_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy2(lib, dest_dir / LIB_NAME)


class SdistWithCrate(sdist):
    def make_release_tree(self, base_dir: str, files: list[str]) -> None:
        super().make_release_tree(base_dir, files)
        _write_crate(Path(base_dir) / SDIST_CRATE)


class BinaryDistribution(Distribution):
    """The wheel carries a native library: a platform wheel whose files sit at its root."""

    def has_ext_modules(self) -> bool:
        return True


class PlatformWheel(bdist_wheel):
    """Tag ``py3-none-<platform>``: a native library for this platform but no extension
    module, so any Python 3 on that platform can load it. scripts/dist then has auditwheel
    turn ``linux_x86_64`` into the manylinux tag the library's symbol versions allow."""

    def get_tag(self) -> tuple[str, str, str]:
        _, _, platform = super().get_tag()
        return "py3", "none", platform


setup(
    cmdclass={"build_py": BuildPyWithLibhap, "bdist_wheel": PlatformWheel, "sdist": SdistWithCrate},
    distclass=BinaryDistribution,
)
