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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from huma_rt.errors import FormatError

T = TypeVar("T")


class _JsonConfig:
    """Mixin: to_dict / from_dict / save / load for flat config dataclasses."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls: type[T], d: dict[str, Any]) -> T:
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = set(d) - names
        if unknown:
            raise FormatError(f"{cls.__name__} has no fields {sorted(unknown)}; known: {sorted(names)}")
        try:
            return cls(**d)
        except TypeError as exc:
            raise FormatError(f"{cls.__name__} config is invalid: {exc}") from exc

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls: type[T], path: str | Path) -> T:
        path = Path(path)
        if not path.is_file():
            raise FormatError(f"config file {path} does not exist")
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise FormatError(f"config file {path} is not valid JSON: {exc}") from exc
        return cls.from_dict(data)  # type: ignore[attr-defined]


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

    def __post_init__(self) -> None:
        if isinstance(self.mel, dict):
            self.mel = MelConfig.from_dict(self.mel)
        if self.mel.sample_rate % self.fps:
            raise FormatError(f"sample_rate {self.mel.sample_rate} must be a multiple of fps {self.fps}")
        if self.samples_per_frame % self.mel.hop:
            raise FormatError(
                f"samples per frame {self.samples_per_frame} must be a multiple of hop {self.mel.hop}"
            )
        if self.past_frames < 0 or self.lookahead_frames < 0:
            raise FormatError("past_frames and lookahead_frames must be >= 0")

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
