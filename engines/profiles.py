"""Optimization profiles: min/opt/max shapes for every dynamic input, and their sanity checks.

Defaults come from the named dynamic axes of the exported graphs (docs/INTERFACES.md):
``B`` (session batch) 1 / 1 / max_batch; ``N`` (Gaussians) min_gaussians / gaussians /
gaussians; ``T`` (mel frames) the encoder's receptive field for one code / the same /
the window of ``max_frames`` codes. ``--profile`` overrides replace a default per input.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from huma_rt.errors import InputError

Shape = tuple[int, ...]


@dataclass
class ProfileOptions:
    """Sizes the profiles cover.

    gaussians: the avatar's Gaussian count N (opt and max of axis N); min_gaussians: min of N;
    max_batch: sessions batched in one run (max of axis B); max_frames: codes per encoder run
    (max of axis T, in video frames).
    """

    gaussians: int = 100_000
    min_gaussians: int = 1
    max_batch: int = 4
    max_frames: int = 8

    def __post_init__(self) -> None:
        for name in ("gaussians", "min_gaussians", "max_batch", "max_frames"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise InputError(f"{name} must be a positive integer; got {v!r}")
        if self.min_gaussians > self.gaussians:
            raise InputError(f"min_gaussians ({self.min_gaussians}) must be <= gaussians ({self.gaussians})")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Profile:
    """min/opt/max shape of one input."""

    min: Shape
    opt: Shape
    max: Shape

    def to_dict(self) -> dict[str, list[int]]:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}


@dataclass(frozen=True)
class InputSig:
    """An ONNX graph input: dims are ints (fixed) or names (dynamic; "?" when unnamed)."""

    name: str
    dims: tuple[int | str, ...]

    @property
    def dynamic(self) -> bool:
        return any(isinstance(d, str) for d in self.dims)


def axis_ranges(opts: ProfileOptions, receptive_mels: int | None, mels_per_frame: int) -> dict[str, tuple[int, int, int]]:
    """Default (min, opt, max) per named dynamic axis."""
    ranges = {"B": (1, 1, opts.max_batch), "N": (opts.min_gaussians, opts.gaussians, opts.gaussians)}
    if receptive_mels is not None:
        r = receptive_mels
        ranges["T"] = (r, r, r + mels_per_frame * (opts.max_frames - 1))
    return ranges


def default_profile(sig: InputSig, ranges: dict[str, tuple[int, int, int]]) -> Profile:
    """The profile of ``sig`` from ``ranges``; InputError for an axis no rule covers."""
    shapes: list[list[int]] = [[], [], []]
    for i, d in enumerate(sig.dims):
        if isinstance(d, int):
            trio = (d, d, d)
        elif d in ranges:
            trio = ranges[d]
        else:
            raise InputError(
                f"input '{sig.name}' axis {i} is dynamic ('{d}') and no default covers it; "
                f"give --profile {sig.name}:MIN,OPT,MAX (shapes like 1x44x80)"
            )
        for k in range(3):
            shapes[k].append(trio[k])
    return Profile(*(tuple(s) for s in shapes))


_SHAPE = re.compile(r"^\d+(x\d+)*$")


def parse_override(text: str) -> tuple[str, Profile]:
    """'[model.]input:MIN,OPT,MAX' (shapes '1x44x80') -> (key, Profile)."""
    key, sep, rest = text.partition(":")
    shapes = rest.split(",")
    if not sep or not key or len(shapes) != 3 or not all(_SHAPE.match(s) for s in shapes):
        raise InputError(f"--profile must look like 'input:1x48,100000x48,100000x48' ([model.]input:MIN,OPT,MAX); got {text!r}")
    mn, op, mx = (tuple(int(v) for v in s.split("x")) for s in shapes)
    return key, Profile(mn, op, mx)


def check_profile(model: str, sig: InputSig, prof: Profile) -> list[str]:
    """Problems of ``prof`` for input ``sig`` (rank, fixed axes, ordering, positivity)."""
    where = f"{model}: profile of '{sig.name}'"
    problems = []
    for label, shape in (("min", prof.min), ("opt", prof.opt), ("max", prof.max)):
        if len(shape) != len(sig.dims):
            problems.append(f"{where}: {label} shape {list(shape)} has rank {len(shape)}, the input has rank {len(sig.dims)} {list(sig.dims)}")
            return problems
        for i, (d, s) in enumerate(zip(sig.dims, shape, strict=True)):
            if isinstance(d, int) and s != d:
                problems.append(f"{where}: {label} shape {list(shape)} sets fixed axis {i} to {s}; the model fixes it at {d}")
            if s < 1:
                problems.append(f"{where}: {label} shape {list(shape)} has axis {i} = {s}; must be >= 1")
    for i in range(len(sig.dims)):
        if not prof.min[i] <= prof.opt[i] <= prof.max[i]:
            problems.append(f"{where}: axis {i} must satisfy min <= opt <= max; got {prof.min[i]}, {prof.opt[i]}, {prof.max[i]}")
    return problems


def check_shared_axes(model: str, sigs: list[InputSig], profiles: dict[str, Profile]) -> list[str]:
    """Axes with the same name in different inputs must get the same min/opt/max."""
    seen: dict[str, tuple[str, tuple[int, int, int]]] = {}
    problems = []
    for sig in sigs:
        prof = profiles.get(sig.name)
        if prof is None or len(prof.min) != len(sig.dims):
            continue
        for i, d in enumerate(sig.dims):
            if not isinstance(d, str) or d == "?":
                continue
            trio = (prof.min[i], prof.opt[i], prof.max[i])
            first = seen.setdefault(d, (sig.name, trio))
            if first[1] != trio:
                problems.append(f"{model}: axis '{d}' is {list(first[1])} in '{first[0]}' but {list(trio)} in '{sig.name}'")
    return problems


def shape_arg(profiles: dict[str, Profile], which: str) -> str:
    """trtexec's 'name:AxB,name2:C' form of one of min/opt/max."""
    return ",".join(f"{n}:" + "x".join(str(v) for v in getattr(p, which)) for n, p in profiles.items())
