"""huma-rt: a real-time runtime for audio-driven 3D Gaussian Splatting talking avatars.

Public API: ``Avatar.load(path)``, ``avatar.session()``, ``session.push_audio(pcm)``,
``session.frames()``, ``Frame`` and the ``HumaError`` hierarchy. Everything else is internal.
"""

from __future__ import annotations

from huma_rt.errors import HumaError

__version__ = "0.1.0"
__all__ = ["Avatar", "Frame", "HumaError", "__version__"]


def __getattr__(name: str):
    # Lazy so that ``import huma_rt`` stays cheap and needs only numpy.
    if name == "Avatar":
        from huma_rt.runtime.avatar import Avatar

        return Avatar
    if name == "Frame":
        from huma_rt.runtime.frame import Frame

        return Frame
    raise AttributeError(f"module 'huma_rt' has no attribute {name!r}")
