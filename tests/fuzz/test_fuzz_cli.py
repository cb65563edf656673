"""Fuzz the ``huma-rt`` command line: subcommands with random and garbage arguments and files.

Outcomes allowed: exit 0; exit 1 with a first stderr line starting ``error:`` and no traceback;
and argparse's own usage errors (unknown flags, missing or malformed values, mutually exclusive
flags), which exit 2 with a ``usage:`` line: that is argparse's contract for malformed flags,
kept as is. Nothing else: no other exit code, no traceback, no exception out of ``main``.

The in-process cases stay on the parsing and validation paths (every case carries a garbage
file where an expensive step would start: a bad audio file before ``demo`` builds its bundle,
a bad PLY or missing regions before ``pack`` writes, a garbage bundle before ``render``
renders), so no avatar is rendered in the loop; a few real subprocess runs check the same
contract for the installed entry point.
"""

from __future__ import annotations

import functools
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from huma_rt.cli import main

_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=12)


@functools.cache
def _files() -> dict[str, str]:
    """Small garbage and near-valid inputs, made once per session in a private folder."""
    d = Path(tempfile.mkdtemp(prefix="huma-fuzz-cli-"))
    wav = b"RIFF\0\0\0\0WAVEfmt \x10\0\0\0" + struct.pack("<HHIIHH", 1, 1, 16000, 32000, 2, 16) + b"data\x40\0\0\0" + b"\1\0" * 32
    files = {
        "garbage.wav": b"\xff\xfe not audio" * 30,
        "tiny.wav": wav,
        "empty.mp3": b"",
        "bad.ply": b"ply\nformat ascii 1.0\nelement vertex 2147483648\nproperty float x\nend_header\n1\n",
        "text.ply": b"ply\nformat binary_little_endian 1.0\nelement vertex 1\nproperty float f_rest_x\nend_header\n\0\0\0\0",
        "camera.json": b'{"width": -1, "fx": "a"}',
        "regions.npy": b"\x93NUMPY garbage",
    }
    for name, data in files.items():
        (d / name).write_bytes(data)
    (d / "bundle").mkdir()
    (d / "bundle" / "manifest.json").write_bytes(b'{"schema": 999, "shapes": [')
    return {name: str(d / name) for name in [*files, "bundle"]} | {"dir": str(d), "missing": str(d / "no" / "such")}


def _path() -> st.SearchStrategy[str]:
    return st.sampled_from(["garbage.wav", "tiny.wav", "empty.mp3", "bad.ply", "text.ply", "camera.json",
                            "regions.npy", "bundle", "dir", "missing"]).map(lambda k: _files()[k])  # fmt: skip


_VALUE = st.one_of(_path(), _TEXT, st.integers(-3, 10**9).map(str), st.sampled_from(["auto", "cpu", "cuda", "fp16", "-1"]))
_FLAGS = {
    "render": ["--bundle", "--audio", "--wav", "--text", "--tts", "-o", "--output", "--png-dir", "--raw", "--device", "--backend",
               "--precision", "--threads", "--strict-rate", "--blink", "--bogus"],
    "demo": ["-o", "--out", "--sheet", "--tts", "--backend", "--device", "--cache-dir", "--rebuild", "--bogus"],
    "pack": ["--regions", "--camera", "--export", "-o", "--name", "--background", "--archive", "--bogus"],
    "chat": ["--asr-model", "--asr-kind", "--asr-mode", "-o", "--output", "--responder", "--timeout", "--bogus"],
    "info": ["--json", "--bogus"],
}  # fmt: skip


def _verdict(rc: int, err: str) -> None:
    assert "Traceback" not in err, err
    if rc == 1:
        assert err.startswith("error: "), err
    elif rc == 2:
        assert "usage:" in err, err  # argparse's usage error for malformed flags
    else:
        assert rc == 0, (rc, err)


def _run(argv: list[str], capsys) -> None:
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse exits on its own (usage errors: 2, --help: 0)
        rc = exc.code if isinstance(exc.code, int) else 1
    _verdict(rc, capsys.readouterr().err)


@st.composite
def _argv(draw) -> list[str]:
    command = draw(st.sampled_from(sorted(_FLAGS)))
    rest: list[str] = []
    for flag in draw(st.lists(st.sampled_from(_FLAGS[command]), max_size=5)):
        rest.append(flag)
        if draw(st.booleans()):
            rest.append(draw(_VALUE))
    # The one required step that fails early, so nothing heavy starts (see the module docstring).
    bad_audio = draw(st.sampled_from(["garbage.wav", "empty.mp3", "missing"]))
    if command == "demo":
        rest = [draw(st.sampled_from(["--audio", "--wav"])), _files()[bad_audio], *rest]
    elif command == "chat":
        rest = [draw(st.sampled_from(["--audio", "--wav"])), _files()[bad_audio], *rest]
    elif command == "render":
        rest = ["--bundle", _files()[draw(st.sampled_from(["bundle", "dir", "missing", "bad.ply"]))], *rest]
    elif command == "pack":
        rest = ["--ply", _files()[draw(st.sampled_from(["bad.ply", "text.ply", "garbage.wav", "missing"]))], *rest]
    if draw(st.booleans()):
        rest.insert(draw(st.integers(0, len(rest))), draw(_TEXT))
    return [command, *rest]


@given(argv=_argv())
def test_subcommands_with_garbage(argv, capsys):
    _run(argv, capsys)


@given(words=st.lists(st.one_of(_TEXT, st.sampled_from(["-v", "-vv", "--help", "render", "pack", "nope"])), max_size=4))
def test_top_level_with_garbage(words, capsys):
    heavy = {"demo", "chat", "bench", "export", "build", "triton-repo"}  # would start real work
    _run([w for w in words if w.strip() not in heavy], capsys)


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["render", "--bundle", "{bundle}", "--audio", "{garbage.wav}", "-o", "{dir}/o.mp4"], 1),
        (["render", "--bundle", "{bundle}", "--wav", "{tiny.wav}", "-o", "{dir}/o.mp4"], 1),
        (["demo", "--audio", "{empty.mp3}"], 1),
        (["pack", "--ply", "{bad.ply}", "--regions", "{regions.npy}", "--camera", "{camera.json}", "--export",
          "{dir}", "-o", "{dir}/out"], 1),  # fmt: skip
        (["render", "--bogus"], 2),
    ],
)
def test_installed_entry_point(argv, code):
    for name, path in _files().items():
        argv = [a.replace("{" + name + "}", path) for a in argv]
    proc = subprocess.run([sys.executable, "-m", "huma_rt", *argv], capture_output=True, text=True, timeout=120)
    assert proc.returncode == code, proc.stderr
    _verdict(proc.returncode, proc.stderr)
