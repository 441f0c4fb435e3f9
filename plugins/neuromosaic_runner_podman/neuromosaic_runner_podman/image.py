"""Build the trial image: ``neuromosaic-podman-image build [--rootfs] [--force]``.

Two ways to the same image (default tag ``localhost/neuromosaic-trial:latest``):

- ``build --rootfs`` needs no registry: ``debootstrap --variant=minbase bookworm`` makes a
  Debian root file system, which ``podman import`` turns into the image. It has no Python of its
  own: the runner mounts the orchestrator's interpreter and virtual environment read-only at the
  same paths (``runner.python=''``, the default). This is what CI runs.
- ``build`` (the Containerfile) needs a registry and PyPI: ``python:3.11-slim`` plus the CPU build
  of torch and this checkout's ``neuromosaic-core``. It works with the mounted interpreter too, and
  also on its own (``runner.python=python3``).

Building again when the tag exists does nothing unless ``--force`` is given. The podman CLI is used
here (not the API client): ``debootstrap``, ``podman import`` and ``podman build`` are one-off
commands, and the CLI streams their progress to the user.
"""

from __future__ import annotations

import argparse
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

DEFAULT_TAG = "localhost/neuromosaic-trial:latest"
#: Bumped when the image's content changes; an image with another version is rebuilt.
IMAGE_VERSION = "1"
LABEL = "io.neuromosaic.trial-image"
PACKAGE_DIR = Path(__file__).resolve().parent
CONTAINERS_CONF = PACKAGE_DIR / "containers.conf"
CONTAINERFILE = PACKAGE_DIR / "Containerfile"
DEFAULT_MIRROR = "http://deb.debian.org/debian"


class ImageError(Exception):
    """A build step failed; the message says which and what to do."""


def podman_env(conf: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """The environment for podman processes: CONTAINERS_CONF pointing at the plugin's file (runc,
    ulimits that can be set), unless the user set CONTAINERS_CONF themselves."""
    env = dict(os.environ)
    if conf:
        env["CONTAINERS_CONF"] = str(conf)
    else:
        env.setdefault("CONTAINERS_CONF", str(CONTAINERS_CONF))
    return env


def image_version(tag: str, podman: str = "podman") -> str | None:
    """The image's build version label, ``""`` for an image without one, None if absent."""
    if shutil.which(podman) is None:
        return None
    env = podman_env()
    if subprocess.run([podman, "image", "exists", tag], env=env, capture_output=True).returncode != 0:
        return None
    out = subprocess.run([podman, "image", "inspect", "--format", f"{{{{ index .Labels \"{LABEL}\" }}}}", tag],
                         env=env, capture_output=True, text=True)
    value = out.stdout.strip()
    return "" if value in ("", "<no value>") else value


def image_is_current(tag: str = DEFAULT_TAG, podman: str = "podman") -> bool:
    return image_version(tag, podman) == IMAGE_VERSION


def _run(cmd: list[str], what: str, env: dict[str, str] | None = None, quiet: bool = False) -> None:
    print(f"+ {' '.join(cmd)}", file=sys.stderr)
    try:
        proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL if quiet else None,
                              stderr=subprocess.PIPE, text=True)
    except FileNotFoundError:
        raise ImageError(f"{what}: '{cmd[0]}' is not installed (apt-get install -y podman runc debootstrap)") from None
    if proc.returncode != 0:
        tail = (proc.stderr or "").strip().splitlines()[-5:]
        raise ImageError(f"{what} failed (exit {proc.returncode}): " + " | ".join(tail))


def build_rootfs(tag: str = DEFAULT_TAG, *, podman: str = "podman", mirror: str = DEFAULT_MIRROR,
                 suite: str = "bookworm", workdir: str | None = None) -> None:
    """debootstrap a minimal Debian, harden it a little, and ``podman import`` it as ``tag``."""
    if shutil.which("debootstrap") is None:
        raise ImageError("debootstrap is not installed (apt-get install -y debootstrap)")
    if os.geteuid() != 0:
        raise ImageError("building the root file system needs root (debootstrap); run it with sudo")
    with tempfile.TemporaryDirectory(prefix="neuromosaic-rootfs-", dir=workdir) as tmp:
        rootfs = Path(tmp) / "rootfs"
        _run(["debootstrap", "--variant=minbase", suite, str(rootfs), mirror], "debootstrap", quiet=True)
        (rootfs / "root").chmod(0o755)
        # No set-user-id programs: a trial runs as nobody with no-new-privileges anyway, but a
        # root file system without them leaves nothing to escalate through.
        # os.walk and lstat: the root file system holds absolute symlinks that would lead to the
        # host's own files.
        for parent, _dirs, files in os.walk(rootfs):
            for name in files:
                mode = os.lstat(os.path.join(parent, name)).st_mode
                if stat.S_ISREG(mode) and mode & 0o6000:
                    os.chmod(os.path.join(parent, name), stat.S_IMODE(mode) & ~0o6000)
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for entry in (rootfs / junk).glob("*"):
                if entry.is_file():
                    entry.unlink()
        for mount_point in ("trial", "input"):
            (rootfs / mount_point).mkdir(mode=0o755, exist_ok=True)
        tarball = Path(tmp) / "rootfs.tar"
        _run(["tar", "-C", str(rootfs), "-cf", str(tarball), "."], "tar")
        changes = ["USER 65534:65534", "WORKDIR /trial", f"LABEL {LABEL}={IMAGE_VERSION}",
                   "ENV HOME=/tmp OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1"]
        cmd = [podman, "import"]
        for change in changes:
            cmd += ["--change", change]
        _run([*cmd, str(tarball), tag], "podman import", env=podman_env(), quiet=True)


def _core_source() -> Path | None:
    """The source checkout of neuromosaic-core when it is installed from one (editable)."""
    import neuromosaic_core

    root = Path(neuromosaic_core.__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").is_file() else None


def build_containerfile(tag: str = DEFAULT_TAG, *, podman: str = "podman", torch_version: str = "2.13.0") -> None:
    """``podman build`` the Containerfile: python:3.11-slim, torch (CPU) and neuromosaic-core."""
    with tempfile.TemporaryDirectory(prefix="neuromosaic-image-") as tmp:
        context = Path(tmp)
        shutil.copy(CONTAINERFILE, context / "Containerfile")
        wheels = context / "wheels"
        wheels.mkdir()
        source = _core_source()
        if source is not None:
            _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(wheels), str(source)], "pip wheel neuromosaic-core")
        else:
            from importlib.metadata import version

            _run([sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(wheels),
                  f"neuromosaic-core=={version('neuromosaic-core')}"], "pip download neuromosaic-core")
        _run([podman, "build", "--build-arg", f"TORCH_VERSION={torch_version}",
              "--label", f"{LABEL}={IMAGE_VERSION}", "-t", tag, "-f", str(context / "Containerfile"), str(context)],
             "podman build", env=podman_env())


def build(tag: str = DEFAULT_TAG, *, rootfs: bool = False, force: bool = False, podman: str = "podman",
          mirror: str = DEFAULT_MIRROR) -> bool:
    """Build the image unless a current one exists; True if it was built."""
    if shutil.which(podman) is None:
        raise ImageError(f"'{podman}' is not installed (apt-get install -y podman runc)")
    if not force and image_is_current(tag, podman):
        return False
    if rootfs:
        build_rootfs(tag, podman=podman, mirror=mirror)
    else:
        build_containerfile(tag, podman=podman)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="neuromosaic-podman-image", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build the trial image (does nothing if it exists, unless --force)")
    b.add_argument("--rootfs", action="store_true",
                   help="no registry: debootstrap a Debian root file system and import it (needs root)")
    b.add_argument("--force", action="store_true", help="rebuild even if the image exists")
    b.add_argument("--tag", default=DEFAULT_TAG, help=f"image name (default {DEFAULT_TAG})")
    b.add_argument("--mirror", default=DEFAULT_MIRROR, help="Debian mirror for --rootfs")
    b.add_argument("--podman", default="podman", help="the podman executable")
    args = parser.parse_args(argv)
    try:
        built = build(args.tag, rootfs=args.rootfs, force=args.force, podman=args.podman, mirror=args.mirror)
    except ImageError as exc:
        print(f"neuromosaic-podman-image: {exc}", file=sys.stderr)
        return 1
    print(f"{'built' if built else 'up to date:'} {args.tag}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
