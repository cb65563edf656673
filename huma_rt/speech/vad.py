"""Voice activity detection: sherpa-onnx's VoiceActivityDetector with the packaged silero model.

sherpa-onnx 2.0 calls ``exit(-1)`` (an uncatchable process death) when handed a silero variant
it does not support, so the model file's ONNX signature is checked with onnxruntime first and
only the signature sherpa runs (inputs ``input, state, sr``; outputs ``output, stateN``) is
passed on. The model comes from the ``silero-vad`` package's data folder through
importlib.resources; ``silero_vad`` itself is never imported (it imports torch).
"""

from __future__ import annotations

import importlib.resources
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from huma_rt._optional import require
from huma_rt.errors import FormatError, InputError, MissingDependencyError
from huma_rt.model_config import _JsonConfig  # to_dict/from_dict/save/load
from huma_rt.speech.audio import TARGET_RATE, Windower, to_mono_float

log = logging.getLogger(__name__)

# (input names, input element types, output names) that sherpa-onnx 2.0's silero code accepts.
# Measured: silero_vad.onnx and silero_vad_16k_op15.onnx match; the packaged half, op18-ifless
# (inputs reordered) and 16k_sequence (h/c state) variants do not, and kill the process.
_SUPPORTED_SIGNATURE = (
    ("input", "state", "sr"),
    ("tensor(float)", "tensor(float)", "tensor(int64)"),
    ("output", "stateN"),
)
DEFAULT_MODEL = "silero_vad.onnx"


def packaged_model() -> Path:
    """Path of ``silero_vad.onnx`` inside the installed ``silero-vad`` package (not imported)."""
    try:
        root = importlib.resources.files("silero_vad")
    except ModuleNotFoundError as exc:
        raise MissingDependencyError(
            "voice activity detection needs the silero VAD model from the 'silero-vad' package; "
            "install it with: pip install silero-vad"
        ) from exc
    path = Path(str(root.joinpath("data", DEFAULT_MODEL)))
    if not path.is_file():
        raise FormatError(f"the silero-vad package has no data/{DEFAULT_MODEL} (looked at {path})")
    return path


def check_silero_model(path: str | Path) -> Path:
    """Raise FormatError unless ``path`` is a silero VAD ONNX model sherpa-onnx can run."""
    path = Path(path)
    if not path.is_file():
        raise FormatError(f"VAD model {path} does not exist")
    ort = require("onnxruntime", "checking the VAD model")
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # the packaged exports carry unused initializers: noisy, harmless
    try:
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf types
        raise FormatError(f"VAD model {path} is not a loadable ONNX model: {exc}") from exc
    got = (
        tuple(i.name for i in sess.get_inputs()),
        tuple(i.type for i in sess.get_inputs()),
        tuple(o.name for o in sess.get_outputs()),
    )
    if got != _SUPPORTED_SIGNATURE:
        raise FormatError(
            f"VAD model {path.name} has inputs {list(got[0])} {list(got[1])} and outputs "
            f"{list(got[2])}; sherpa-onnx needs the silero v5 signature inputs "
            f"{list(_SUPPORTED_SIGNATURE[0])} outputs {list(_SUPPORTED_SIGNATURE[2])} "
            "(use silero_vad.onnx or silero_vad_16k_op15.onnx; other variants crash the process)"
        )
    return path


@dataclass
class VadConfig(_JsonConfig):
    """Silero VAD settings (seconds unless noted).

    model: ONNX path; None = the packaged silero_vad.onnx. threshold: speech probability cut.
    min_silence_s: silence that ends a segment (the main latency knob: the end of speech is
    reported this long after it happens). window: samples per model call (512 at 16 kHz).
    """

    model: str | None = None
    threshold: float = 0.5
    min_silence_s: float = 0.3
    min_speech_s: float = 0.25
    max_speech_s: float = 20.0
    window: int = 512
    num_threads: int = 1
    buffer_s: float = 60.0


    def validate(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise InputError(f"VAD threshold must be in (0, 1); got {self.threshold}")
        if self.window != 512:
            raise InputError(f"silero VAD window must be 512 samples at 16 kHz; got {self.window}")
        for name in ("min_silence_s", "min_speech_s", "max_speech_s"):
            if getattr(self, name) <= 0:
                raise InputError(f"VAD {name} must be > 0 seconds; got {getattr(self, name)}")


@dataclass(frozen=True)
class SpeechSegment:
    """One stretch of speech: samples [start, end) of the stream at 16 kHz, and its audio.

    detected_at: time.perf_counter() when the VAD reported the segment's end.
    """

    start: int
    end: int
    samples: np.ndarray
    detected_at: float

    @property
    def start_s(self) -> float:
        return self.start / TARGET_RATE

    @property
    def end_s(self) -> float:
        return self.end / TARGET_RATE


class StreamingVad:
    """Streaming VAD over 16 kHz mono audio: ``push(pcm)`` -> finished segments.

    Audio of any chunk size goes in and is handed to sherpa in exact ``window``-sample pieces:
    measured with sherpa-onnx 2.0.1, feeding it many windows in one call shifts the segment
    boundaries (by up to 0.7 s), so the windowing is ours. ``flush()`` at the end of the stream
    pads the last partial window with silence and closes a segment that is still open.
    """

    def __init__(self, config: VadConfig | None = None) -> None:
        self.config = config or VadConfig()
        self.config.validate()
        model = check_silero_model(self.config.model or packaged_model())
        so = require("sherpa_onnx", "voice activity detection")
        c = self.config
        vad_cfg = so.VadModelConfig(
            silero_vad=so.SileroVadModelConfig(
                model=str(model),
                threshold=c.threshold,
                min_silence_duration=c.min_silence_s,
                min_speech_duration=c.min_speech_s,
                window_size=c.window,
                max_speech_duration=c.max_speech_s,
            ),
            sample_rate=TARGET_RATE,
            num_threads=c.num_threads,
        )
        if not vad_cfg.validate():
            raise FormatError(f"sherpa-onnx rejected the VAD config {c.to_dict()}")
        self._vad = so.VoiceActivityDetector(vad_cfg, buffer_size_in_seconds=c.buffer_s)
        self._pushed = 0
        self._windower = Windower(c.window)  # sherpa is handed exact windows (see above)
        self.busy_s = 0.0  # compute time spent inside sherpa, for the real-time factor

    @property
    def pushed_samples(self) -> int:
        return self._pushed

    def push(self, pcm: np.ndarray) -> list[SpeechSegment]:
        """Feed 16 kHz mono audio [S] f32; returns the segments that ended inside it."""
        x = to_mono_float(pcm, name="VAD input")
        if x.ndim != 1:
            raise InputError(f"VAD input must be mono; got shape {x.shape}")
        t0 = time.perf_counter()
        for w in self._windower.windows(x):
            self._vad.accept_waveform(w)
        self.busy_s += time.perf_counter() - t0
        self._pushed += x.size
        return list(self._drain())

    def speaking(self) -> bool:
        """True while the detector is inside a speech segment."""
        return bool(self._vad.is_speech_detected())

    def flush(self) -> list[SpeechSegment]:
        """End of stream: return the segment still open (if any) and reset the detector."""
        t0 = time.perf_counter()
        last = self._windower.pad()
        if last is not None:
            self._vad.accept_waveform(last)
        self._vad.flush()
        self.busy_s += time.perf_counter() - t0
        segments = list(self._drain())
        self._vad.reset()
        return segments

    def _drain(self) -> Iterator[SpeechSegment]:
        while not self._vad.empty():
            seg = self._vad.front
            samples = np.asarray(seg.samples, dtype=np.float32)
            start = int(seg.start)
            self._vad.pop()
            yield SpeechSegment(start, start + samples.size, samples, time.perf_counter())


def detect_segments(pcm: np.ndarray, config: VadConfig | None = None, chunk: int = 1600) -> list[SpeechSegment]:
    """Run the streaming VAD over a whole 16 kHz clip in ``chunk``-sample pushes."""
    vad = StreamingVad(config)
    x = to_mono_float(pcm, name="VAD input")
    out: list[SpeechSegment] = []
    for i in range(0, x.size, chunk):
        out.extend(vad.push(x[i : i + chunk]))
    out.extend(vad.flush())
    return out
