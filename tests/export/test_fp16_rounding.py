"""fp16 conversion rounds every weight as IEEE fp16 does, without the converter's warnings."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
from huma_rt.export.fp16 import to_fp16
from onnx import helper, numpy_helper


def _matmul_model(w: np.ndarray) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, w.shape[0]])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, w.shape[1]])
    node = helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")
    graph = helper.make_graph([node], "g", [x], [y], [numpy_helper.from_array(w, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_tiny_and_ordinary_weights_round_like_numpy_float16():
    # below 2^-25 (-> 0), between 2^-25 and the smallest subnormal 2^-24 (-> 2^-24), subnormals,
    # normals, and the trained demo's kind of stray values (1e-37)
    values = [1e-37, -4e-36, 2.0e-8, 3.5e-8, -5e-8, 9e-8, 1e-6, -0.25, 1.5, 0.0]
    w = np.array(values, np.float32).reshape(-1, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fp16 = to_fp16(_matmul_model(w))
    got = {t.name: numpy_helper.to_array(t) for t in fp16.graph.initializer}["w"]
    assert got.dtype == np.float16
    np.testing.assert_array_equal(got, w.astype(np.float16))
