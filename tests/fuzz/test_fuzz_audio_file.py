"""Fuzz the audio-file reader (PyAV underneath): random bytes behind each format's magic, and
real WAV, FLAC, MP3, M4A and OGG files with flipped bytes, cut or extended bodies and
overwritten header fields. The verdict: finite 16 kHz mono float32, or a HumaError naming the
file; never another exception, never more than MAX_SECONDS of audio decoded."""

from __future__ import annotations

import functools
import struct
import sys
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from huma_rt.errors import HumaError
from huma_rt.media.audio_file import load_audio

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "media"))
from _audio_files import write_kind  # noqa: E402
from _outcome import succeeds_or_huma_error  # noqa: E402

_MAGIC = [b"", b"RIFF\x24\0\0\0WAVEfmt ", b"fLaC", b"ID3\x04\0\0\0\0\0\0", b"\xff\xfb\x90\x64", b"OggS\0\x02",
          b"\0\0\0\x20ftypM4A \0\0\0\0", b"\x1a\x45\xdf\xa3", b"FORM\0\0\0\x20AIFF", b"\xff\xf1\x50\x80"]  # fmt: skip
_KINDS = ["wav-PCM_16", "wav-PCM_U8", "wav-FLOAT", "flac", "mp3", "m4a", "ogg", "opus"]
_MAX_SECONDS = 5.0  # a low bound, so a mutation that inflates the length is cut early


@functools.cache
def _original(kind: str) -> tuple[str, bytes]:
    """(suffix, bytes) of a real 0.25 s file (cached; not a fixture, so failures print short)."""
    with tempfile.TemporaryDirectory() as d:
        path, _ = write_kind(Path(d), kind, seconds=0.25, rate=22050)
        return path.suffix, path.read_bytes()


def _check(path: Path) -> None:
    out = succeeds_or_huma_error(lambda: load_audio(path, max_seconds=_MAX_SECONDS))
    if isinstance(out, HumaError):
        assert path.name in str(out), str(out)
        return
    pcm, info = out
    assert pcm.dtype == np.float32 and pcm.ndim == 1 and np.isfinite(pcm).all()
    assert pcm.size <= _MAX_SECONDS * 16000 + 64 and 1 <= info.channels <= 8


@given(magic=st.sampled_from(_MAGIC), tail=st.binary(max_size=3000), ext=st.sampled_from([".wav", ".mp3", ".bin"]))
def test_random_bytes_behind_a_magic(tmp_path, magic, tail, ext):
    path = tmp_path / f"random{ext}"
    path.write_bytes(magic + tail)
    _check(path)


@settings(max_examples=settings.default.max_examples * 2)
@given(kind=st.sampled_from(_KINDS), cut=st.integers(0, 6000), extra=st.binary(max_size=200),
       flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=8),
       head_flips=st.lists(st.tuples(st.integers(0, 80), st.integers(0, 255)), max_size=4))  # fmt: skip
def test_mutated_real_files(tmp_path, kind, cut, extra, flips, head_flips):
    ext, data = _original(kind)
    buf = bytearray(data[: max(1, len(data) - cut)] + extra)
    for pos, value in head_flips:  # container and codec headers live in the first bytes
        buf[pos % len(buf)] = value
    for pos, value in flips:
        buf[pos % len(buf)] = value
    path = tmp_path / f"mutated{ext}"
    path.write_bytes(bytes(buf))
    _check(path)


@given(channels=st.integers(0, 65535), rate=st.integers(0, 2**32 - 1), bits=st.sampled_from([0, 1, 8, 12, 16, 24, 32, 64]),
       tag=st.sampled_from([1, 3, 6, 7, 0x55, 0xFFFE, 0]), size=st.integers(0, 2**32 - 1),
       body=st.binary(max_size=400))  # fmt: skip
def test_wav_header_fields(tmp_path, channels, rate, bits, tag, size, body):
    block = max(1, channels * bits // 8) & 0xFFFF
    fmt = struct.pack("<HHIIHH", tag, channels, rate, (rate * block) & 0xFFFFFFFF, block, bits)
    path = tmp_path / "fields.wav"
    path.write_bytes(b"RIFF\0\0\0\0WAVEfmt \x10\0\0\0" + fmt + b"data" + struct.pack("<I", size) + body)
    _check(path)
