"""Model configs shared by training/export (export/) and the runtime (huma_rt/).

They travel as JSON beside the weights and inside bundle manifests. Timing contract: audio is
16 kHz mono; one video frame at 25 fps is 640 samples = 4 mel frames (hop 160). Video frame t
owns samples [640 t, 640 (t + 1)); its mel frames are 4t..4t+3, mel frame m being the window
[160 m - MEL_LEFT_PAD, 160 m - MEL_LEFT_PAD + 400) (samples before 0 are silence). The encoder
maps the mel frames [4 (t - past_frames), 4 (t + 1 + lookahead_frames)) to the motion code of
frame t, so a code needs ``lookahead_samples`` of audio after the frame's own span.
"""

from __future__ import annotations

import dataclasses
import json
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from huma_rt.errors import ConfigError, FormatError

T = TypeVar("T")

_MAX_CONFIG_BYTES = 1 << 20
MAX_MEL_RATE = 1000  # mel frames per second (sample_rate / hop); 100 at the defaults
MAX_WINDOW_FLOATS = 1 << 20  # receptive_mels * n_mels: one encoder input window (defaults: 3520)
MAX_PLANE_FLOATS = 1 << 26  # plane_channels * plane_resolution^2: one tri-plane (defaults: 32768)


class _JsonConfig:
    """Mixin: to_dict / from_dict / save / load for flat config dataclasses.

    Every config checks its fields on construction (``_validate``): types, ranges and required
    keys against its definition in huma_rt/bundle/manifest.schema.json (``_SCHEMA``), then the
    rules between fields (``_check``); any violation is a ConfigError (a FormatError and an
    InputError) naming the field.
    """

    _SCHEMA = ""  # "#/$defs/<name>" in the manifest schema
    _INTS: tuple[str, ...] = ()
    _FLOATS: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls: type[T], d: dict[str, Any], *, what: str | None = None) -> T:
        """Build from a JSON object; FormatError (prefixed by ``what``) for unknown, missing or bad fields."""
        what = what or cls.__name__
        if not isinstance(d, dict):
            raise ConfigError(f"{what} must be a JSON object; got {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = set(d) - names
        if unknown:
            raise ConfigError(f"{what} has no fields {sorted(map(str, unknown))}; known: {sorted(names)}")
        from huma_rt.bundle.schema import check

        try:
            check(d, cls._SCHEMA, what)  # type: ignore[attr-defined]
        except FormatError as exc:
            raise ConfigError(str(exc)) from exc
        try:
            return cls(**d)
        except FormatError as exc:
            raise ConfigError(f"{what}: {exc}") from exc

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls: type[T], path: str | Path) -> T:
        path = Path(path)
        if not path.is_file():
            raise FormatError(f"config file {path} does not exist")
        if path.stat().st_size > _MAX_CONFIG_BYTES:
            raise FormatError(f"config file {path} is {path.stat().st_size} bytes; a config is at most {_MAX_CONFIG_BYTES}")
        from huma_rt.bundle.schema import parse_json

        try:
            text = path.read_bytes()
        except OSError as exc:
            raise FormatError(f"config file {path} cannot be read: {exc}") from exc
        data = parse_json(text, f"config file {path}")
        return cls.from_dict(data, what=f"config file {path}")  # type: ignore[attr-defined]

    def _validate(self) -> None:
        from huma_rt.bundle.schema import check

        for name in self._INTS:  # numpy scalars pass the schema's type check; store plain Python numbers
            v = getattr(self, name)
            if isinstance(v, numbers.Integral) and not isinstance(v, bool):
                setattr(self, name, int(v))
        for name in self._FLOATS:
            v = getattr(self, name)
            if isinstance(v, numbers.Real) and not isinstance(v, bool):
                setattr(self, name, float(v))
        try:
            check(self.to_dict(), self._SCHEMA, type(self).__name__)
        except FormatError as exc:
            raise ConfigError(str(exc)) from exc
        try:
            self._check()
        except FormatError as exc:
            raise ConfigError(f"{type(self).__name__}: {exc}") from exc

    def _check(self) -> None:
        """Rules between fields (after the schema)."""


@dataclass
class MelConfig(_JsonConfig):
    """Log-mel front end: 25 ms Hann window, 10 ms hop, 80 HTK mel bins, natural log."""

    sample_rate: int = 16000
    n_fft: int = 400
    hop: int = 160
    n_mels: int = 80
    fmin: float = 0.0
    fmax: float = 8000.0
    log_floor: float = 1e-5

    _SCHEMA = "#/$defs/mel"
    _INTS = ("sample_rate", "n_fft", "hop", "n_mels")
    _FLOATS = ("fmin", "fmax", "log_floor")

    def __post_init__(self) -> None:
        self._validate()

    def _check(self) -> None:
        if self.hop > self.n_fft:
            raise FormatError(f"hop {self.hop} must be <= n_fft {self.n_fft} (windows would skip samples)")
        if not self.fmin < self.fmax <= self.sample_rate / 2:
            raise FormatError(
                f"mel band needs fmin < fmax <= sample_rate / 2; got fmin={self.fmin}, fmax={self.fmax}, "
                f"sample_rate={self.sample_rate}"
            )

    @property
    def left_pad(self) -> int:
        """Samples of silence before sample 0 so mel frames centre inside their video frame."""
        return self.n_fft // 2 - self.hop // 2


@dataclass
class EncoderConfig(_JsonConfig):
    """AudioEncoder: log-mel -> one motion code per video frame.

    past_frames / lookahead_frames are in video frames; the receptive field of one code is
    past_frames + 1 + lookahead_frames video frames of mel.
    """

    fps: int = 25
    code_dim: int = 32
    channels: int = 128
    past_frames: int = 8
    lookahead_frames: int = 2
    mel: MelConfig = field(default_factory=MelConfig)

    _SCHEMA = "#/$defs/encoder"
    _INTS = ("fps", "code_dim", "channels", "past_frames", "lookahead_frames")

    def __post_init__(self) -> None:
        if isinstance(self.mel, dict):
            self.mel = MelConfig.from_dict(self.mel, what="EncoderConfig field $.mel")
        elif not isinstance(self.mel, MelConfig):
            raise ConfigError(f"EncoderConfig field $.mel must be a MelConfig or a JSON object; got {type(self.mel).__name__}")
        self._validate()

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "mel": self.mel.to_dict()}

    def _check(self) -> None:
        m = self.mel
        if m.sample_rate % self.fps:
            raise FormatError(f"sample_rate {m.sample_rate} must be a multiple of fps {self.fps}")
        if self.samples_per_frame % m.hop:
            raise FormatError(f"samples per frame {self.samples_per_frame} must be a multiple of hop {m.hop}")
        if m.sample_rate > MAX_MEL_RATE * m.hop:
            raise FormatError(f"sample_rate / hop = {m.sample_rate} / {m.hop} mel frames per second exceeds {MAX_MEL_RATE}")
        if self.receptive_mels * m.n_mels > MAX_WINDOW_FLOATS:
            raise FormatError(
                f"one encoder window of receptive_mels * n_mels = {self.receptive_mels} * {m.n_mels} floats exceeds "
                f"{MAX_WINDOW_FLOATS} (lower past_frames {self.past_frames} or lookahead_frames {self.lookahead_frames})"
            )

    @property
    def samples_per_frame(self) -> int:
        return self.mel.sample_rate // self.fps

    @property
    def mels_per_frame(self) -> int:
        return self.samples_per_frame // self.mel.hop

    @property
    def receptive_mels(self) -> int:
        """Mel frames one code depends on."""
        return self.mels_per_frame * (self.past_frames + 1 + self.lookahead_frames)

    @property
    def lookahead_samples(self) -> int:
        """Audio needed after a frame's own span before its code can be computed."""
        last_mel = self.mels_per_frame * (1 + self.lookahead_frames) - 1  # relative to frame start
        end = last_mel * self.mel.hop - self.mel.left_pad + self.mel.n_fft
        return end - self.samples_per_frame


@dataclass
class DeformerConfig(_JsonConfig):
    """Spatial encoder (tri-plane at canonical positions) + per-frame MLP deformer.

    The spatial graph maps canonical means [N,3] to ``hidden``-wide features (the deformer's
    first-layer projection of the tri-plane lookups, folded in so preload pays for it once);
    the per-frame graph maps (feat [N,hidden], code [1,code_dim]) to dmu [N,3], dquat [N,4],
    dscale [N,3].
    """

    code_dim: int = 32
    plane_channels: int = 8
    plane_resolution: int = 32
    hidden: int = 48
    layers: int = 2
    bbox_min: list[float] = field(default_factory=lambda: [-1.0, -1.0, -1.0])
    bbox_max: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])

    _SCHEMA = "#/$defs/deformer"
    _INTS = ("code_dim", "plane_channels", "plane_resolution", "hidden", "layers")

    def __post_init__(self) -> None:
        for name in ("bbox_min", "bbox_max"):
            v = getattr(self, name)
            if isinstance(v, (list, tuple)):
                setattr(self, name, [float(x) if isinstance(x, numbers.Real) and not isinstance(x, bool) else x for x in v])
        self._validate()

    def _check(self) -> None:
        if not all(lo < hi for lo, hi in zip(self.bbox_min, self.bbox_max, strict=True)):
            raise FormatError(f"bbox_min must be < bbox_max on every axis; got {self.bbox_min}, {self.bbox_max}")
        planes = self.plane_channels * self.plane_resolution**2
        if planes > MAX_PLANE_FLOATS:
            raise FormatError(
                f"one tri-plane of plane_channels * plane_resolution^2 = {planes} floats exceeds {MAX_PLANE_FLOATS}"
            )
