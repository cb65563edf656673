"""The shipped demo weights export with every check passing (fp16 parity included).

Regression: the trained tri-plane weights rounded to fp16 moved the spatial features by ~2e-2
of their range; the preload-only spatial graph now keeps fp32 inside its fp16 variant.
"""

from __future__ import annotations

import onnx
from huma_rt.export.checkpoint import DEMO_CHECKPOINT_DIR, load_checkpoint
from huma_rt.export.onnx_export import export_models


def test_demo_weights_export_passes_every_check(tmp_path):
    encoder, spatial, deformer, _, _ = load_checkpoint(DEMO_CHECKPOINT_DIR)
    result = export_models(tmp_path, encoder, spatial, deformer, source="demo")  # raises on failure
    assert result is not None
    spatial16 = onnx.load(str(tmp_path / "spatial.fp16.onnx"))
    assert all(t.data_type == onnx.TensorProto.FLOAT for t in spatial16.graph.initializer)
    deformer16 = onnx.load(str(tmp_path / "deformer.fp16.onnx"))
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in deformer16.graph.initializer)
