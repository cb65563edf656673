"""The audio-file reader (huma_rt.media.audio_file): the formats users hold, its bounds, and the
commands that read audio through it (render, demo) at rates AAC cannot encode."""

from __future__ import annotations

import struct
import sys

import av
import numpy as np
import pytest
import soundfile

from huma_rt.errors import FormatError, InputError, MissingDependencyError
from huma_rt.media import Mp4Writer, load_audio, read_audio, write_mp4

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from _audio_files import KINDS, tone, write_audio, write_kind  # noqa: E402


def _wav_header(channels: int, rate: int, bits: int = 16, tag: int = 1, data: bytes = b"\0\0") -> bytes:
    block = channels * bits // 8
    return (b"RIFF\0\0\0\0WAVEfmt \x10\0\0\0" + struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)
            + b"data" + struct.pack("<I", len(data)) + data)  # fmt: skip


def _dominant_hz(x: np.ndarray, rate: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.argmax(spec) * rate / x.size)


@pytest.mark.parametrize("kind", KINDS)
def test_every_format_decodes_to_16k_mono(tmp_path, kind):
    path, _ = write_kind(tmp_path, kind, seconds=1.0)
    pcm, info = load_audio(path)
    assert pcm.dtype == np.float32 and pcm.ndim == 1
    assert abs(pcm.size - 16000) <= 1200, pcm.size  # codecs pad up to a frame
    assert info.sample_rate == (48000 if kind == "opus" else 44100) and info.channels == (2 if kind == "ogg" else 1)
    mid = pcm[2000:14000]
    assert abs(_dominant_hz(mid, 16000) - 220) < 3
    rms = float(np.sqrt(np.mean(mid**2)))
    assert abs(rms - 0.3 / np.sqrt(2)) < 0.03, rms  # a 0.3 sine survives every codec within 15 %


@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"])
def test_wav_read_exactly_as_soundfile_reads_it(tmp_path, subtype):
    x = np.random.default_rng(0).uniform(-0.9, 0.9, (3001, 2)).astype(np.float32)
    p = tmp_path / "a.wav"
    soundfile.write(p, x, 11025, subtype=subtype)
    got, rate = read_audio(p)
    want, _ = soundfile.read(p, dtype="float32")
    assert rate == 11025 and got.shape == (3001, 2)
    np.testing.assert_array_equal(got, want)


def test_many_channels_are_read_and_downmixed(tmp_path):
    x = np.stack([tone(0.5, 8000), np.zeros(4000, np.float32), -tone(0.5, 8000)], 1)
    p = tmp_path / "three.wav"
    soundfile.write(p, x, 8000, subtype="FLOAT")
    got, rate = read_audio(p)
    assert got.shape == (4000, 3) and rate == 8000
    mono, info = load_audio(p, 8000)
    assert info.channels == 3 and np.abs(mono).max() < 1e-6  # (a + 0 - a) / 3


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "empty"),
        (b"\xff\xfe not audio at all" * 40, "not an audio file"),
        (_wav_header(9, 8000), "9 audio channels; expected 1..8"),
        (_wav_header(1, 2000), "sample rate 2000 Hz; expected 4000..384000"),
        (_wav_header(1, 8000, bits=32, tag=3, data=np.full(4, np.nan, "<f4").tobytes()), "NaN"),
        (_wav_header(1, 8000, data=b""), "no audio samples"),
    ],
)
def test_bad_files_are_format_errors_naming_the_file(tmp_path, data, match):
    p = tmp_path / "bad.audio"
    p.write_bytes(data)
    with pytest.raises(FormatError, match=match) as err:
        load_audio(p)
    assert "bad.audio" in str(err.value)


def test_missing_and_directory(tmp_path):
    with pytest.raises(FormatError, match="does not exist"):
        read_audio(tmp_path / "none.mp3")
    with pytest.raises(FormatError, match="not a regular file"):
        read_audio(tmp_path)


def test_duration_bound_before_and_during_decoding(tmp_path):
    path, _ = write_kind(tmp_path, "flac", seconds=2.0, rate=8000)  # FLAC declares its length
    with pytest.raises(FormatError, match=r"declares 2 s of audio; at most 1 s"):
        read_audio(path, max_seconds=1)
    data = bytearray(path.read_bytes())  # the same FLAC with STREAMINFO's total samples zeroed
    data[8 + 13] &= 0xF0  # (unknown length): the bound is counted while decoding
    data[8 + 14 : 8 + 18] = b"\0\0\0\0"
    unknown = tmp_path / "unknown_length.flac"
    unknown.write_bytes(bytes(data))
    with pytest.raises(FormatError, match=r"unknown_length.flac: decodes to more than 1 s"):
        read_audio(unknown, max_seconds=1)
    assert read_audio(unknown, max_seconds=3)[0].size == 16000
    with pytest.raises(InputError, match="max_seconds"):
        read_audio(unknown, max_seconds=10**9)


def test_missing_pyav_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)
    with pytest.raises(MissingDependencyError, match=r"huma-rt\[media\]"):
        read_audio(tmp_path / "x.wav")


@pytest.mark.parametrize("rate", [5000, 12345, 192000])
def test_mp4_writer_resamples_rates_aac_cannot_encode(tmp_path, rate):
    frames = [np.full((16, 16, 3), 9 * i, np.uint8) for i in range(25)]
    out = write_mp4(tmp_path / "o.mp4", frames, tone(1.0, rate), fps=25, sample_rate=rate)
    with av.open(str(out)) as c:
        a = c.streams.audio[0]
        assert a.codec_context.name == "aac" and a.rate == 48000
        assert abs(float(a.duration * a.time_base) - 1.0) < 0.05
        pcm = np.concatenate([f.to_ndarray()[0] for f in c.decode(audio=0)])
    assert abs(_dominant_hz(pcm[4800:43200], 48000) - 220) < 3
    with pytest.raises(InputError, match="sample_rate"):
        Mp4Writer(tmp_path / "p.mp4", 25, (8, 8), sample_rate=0)


def _audio_stream(path):
    with av.open(str(path)) as c:
        a = c.streams.audio[0]
        return a.codec_context.name, a.rate, float(a.duration * a.time_base), c.streams.video[0].frames


@pytest.mark.parametrize("rate", [5000, 12345, 192000])
def test_render_cli_wav_at_rates_aac_cannot_encode(media_bundle, tmp_path, capsys, rate):
    from huma_rt.cli import main

    wav = tmp_path / f"in{rate}.wav"
    soundfile.write(wav, tone(0.4, rate), rate, subtype="PCM_16")
    out = tmp_path / "o.mp4"
    assert main(["render", "--bundle", str(media_bundle), "--wav", str(wav), "-o", str(out), "--threads", "1"]) == 0
    codec, track_rate, seconds, frames = _audio_stream(out)
    assert codec == "aac" and track_rate == 16000 and abs(seconds - 0.4) < 0.1 and frames == 10
    assert main(["render", "--bundle", str(media_bundle), "--wav", str(wav), "-o", str(out), "--strict-rate"]) == 1
    assert f"got {rate} Hz" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["mp3", "m4a", "ogg", "flac", "wav-PCM_U8"])
def test_render_cli_format_matrix(media_bundle, tmp_path, kind):
    from huma_rt.cli import main

    path, _ = write_kind(tmp_path, kind, seconds=0.4, rate=22050)
    out = tmp_path / "o.mp4"
    assert main(["render", "--bundle", str(media_bundle), "--audio", str(path), "-o", str(out), "--threads", "1"]) == 0
    codec, _rate, seconds, frames = _audio_stream(out)
    assert codec == "aac" and abs(seconds - 0.4) < 0.15 and 10 <= frames <= 12


def test_render_cli_bad_audio_is_one_error_line(media_bundle, tmp_path, capsys):
    from huma_rt.cli import main

    bad = write_audio(tmp_path / "cut.mp3", tone(0.5, 16000), 16000, "mp3")
    bad.write_bytes(b"\0" * 64)
    assert main(["render", "--bundle", str(media_bundle), "--audio", str(bad), "-o", str(tmp_path / "o.mp4")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "cut.mp3" in err and "Traceback" not in err


def test_load_audio_is_the_runtime_resampler_over_the_whole_clip(tmp_path):
    """Streaming decode + resample == reading everything, then the runtime's resampler once (so
    render's frames are what Avatar.render made of the same WAV before the reader changed)."""
    from huma_rt.runtime.audio_input import StreamResampler

    x = np.random.default_rng(2).uniform(-0.5, 0.5, (70001, 2)).astype(np.float32)
    p = tmp_path / "s.wav"
    soundfile.write(p, x, 22050, subtype="FLOAT")
    got, info = load_audio(p)
    r = StreamResampler(22050, 16000)
    mono = x.mean(axis=1, dtype=np.float32)
    np.testing.assert_array_equal(got, np.concatenate([r.push(mono), r.flush()]))
    same, _ = load_audio(p, 22050)
    np.testing.assert_array_equal(same, mono)


def test_read_audio_bounds_values_kept_at_the_native_rate(tmp_path):
    x = np.zeros((96000, 4), np.float32)  # 1 s at 96 kHz x 4 channels = 4 s of 48 kHz stereo values
    p = tmp_path / "wide.flac"
    soundfile.write(p, x, 96000, subtype="PCM_16")
    with pytest.raises(FormatError, match="load_audio"):
        read_audio(p, max_seconds=2)
    assert load_audio(p, max_seconds=2)[0].size == 16000


def test_pack_ply_then_render_mp3_end_to_end(media_bundle, tmp_path, capsys):
    """The two readers in the real flow: pack --ply (plyfile) builds a bundle whose Gaussians are
    the PLY's, and render --audio renders an MP3 through it."""
    import json

    from _runtime_avatar import shared_export, small_camera, small_gaussians

    from huma_rt.bundle import open_bundle
    from huma_rt.cli import main
    from huma_rt.formats import write_ply

    g = small_gaussians()
    ply = write_ply(tmp_path / "head.ply", g)
    np.save(tmp_path / "regions.npy", g.region.astype(np.int64))
    (tmp_path / "camera.json").write_text(json.dumps(small_camera().to_dict()))
    export = shared_export(tmp_path.parent)  # the export media_bundle was packed from (cached per process)
    out = tmp_path / "bundle"
    assert main(["pack", "--ply", str(ply), "--regions", str(tmp_path / "regions.npy"), "--camera",
                 str(tmp_path / "camera.json"), "--export", str(export), "-o", str(out)]) == 0, capsys.readouterr().err  # fmt: skip
    b = open_bundle(out)
    packed = b.gaussians()
    np.testing.assert_array_equal(packed.means, g.means)
    np.testing.assert_array_equal(packed.region, g.region)
    mp3, _ = write_kind(tmp_path, "mp3", seconds=0.4, rate=44100)
    assert main(["render", "--bundle", str(out), "--audio", str(mp3), "-o", str(tmp_path / "o.mp4"), "--threads", "1"]) == 0
    assert _audio_stream(tmp_path / "o.mp4")[0] == "aac"
