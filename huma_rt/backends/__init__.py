"""Inference backends: one Runner interface over onnxruntime, TensorRT and Triton.

``open_runner(model, backend=..., device=...)`` returns a Runner; ``runner.bind(inputs=...,
outputs=...)`` once, then ``runner.run()`` per frame. GPU libraries are imported lazily.
"""

from __future__ import annotations

from huma_rt.backends.base import Runner, TensorSpec
from huma_rt.backends.select import BACKENDS, open_runner

__all__ = ["BACKENDS", "Runner", "TensorSpec", "open_runner"]
