"""Builds a tiny but real sherpa-onnx offline transducer (encoder/decoder/joiner + tokens.txt).

No ASR model can be obtained on our machines, so this hand-made one exercises the real
sherpa-onnx OfflineRecognizer path end to end: sherpa computes fbank features from the audio,
runs these three ONNX graphs and greedy-decodes. The "model" emits token 'a' for every 10 ms
feature frame whose mean log-mel energy is above -8 and blank otherwise, so silence decodes
to "" and speech to a run of 'a's about as long as its loud part (in 10 ms frames).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def build_tiny_transducer(out: Path) -> Path:
    import onnx
    from onnx import TensorProto as T
    from onnx import helper as h
    from onnx import numpy_helper as nh

    out.mkdir(parents=True, exist_ok=True)
    d, v = 4, 3  # model dim; vocabulary <blk>, a, b

    def save(graph, name, meta):
        model = h.make_model(graph, opset_imports=[h.make_opsetid("", 13)])
        model.ir_version = 8
        h.set_model_props(model, meta)
        onnx.checker.check_model(model)
        onnx.save(model, str(out / name))

    w = np.zeros((80, d), np.float32)
    w[:, 0] = 1 / 80  # channel 0 = mean log-mel energy of the frame
    bias = np.array([8, 0, 0, 0], np.float32)
    save(h.make_graph(
        [h.make_node("MatMul", ["x", "w"], ["m"]), h.make_node("Add", ["m", "b"], ["encoder_out"]),
         h.make_node("Identity", ["x_lens"], ["encoder_out_lens"])], "encoder",
        [h.make_tensor_value_info("x", T.FLOAT, ["N", "T", 80]), h.make_tensor_value_info("x_lens", T.INT64, ["N"])],
        [h.make_tensor_value_info("encoder_out", T.FLOAT, ["N", "T", d]),
         h.make_tensor_value_info("encoder_out_lens", T.INT64, ["N"])],
        [nh.from_array(w, "w"), nh.from_array(bias, "b")]), "encoder.onnx", {})
    save(h.make_graph(
        [h.make_node("Gather", ["emb", "y"], ["g"]),
         h.make_node("ReduceMean", ["g"], ["decoder_out"], axes=[1], keepdims=0)], "decoder",
        [h.make_tensor_value_info("y", T.INT64, ["N", 2])], [h.make_tensor_value_info("decoder_out", T.FLOAT, ["N", d])],
        [nh.from_array(np.zeros((v, d), np.float32), "emb")]), "decoder.onnx", {"vocab_size": str(v), "context_size": "2"})
    wj = np.zeros((d, v), np.float32)
    wj[0, 1] = 1.0  # logit('a') = energy score; logit(blank) = 0
    save(h.make_graph(
        [h.make_node("Add", ["encoder_out", "decoder_out"], ["s"]), h.make_node("MatMul", ["s", "wj"], ["logit"])],
        "joiner",
        [h.make_tensor_value_info("encoder_out", T.FLOAT, ["N", d]), h.make_tensor_value_info("decoder_out", T.FLOAT, ["N", d])],
        [h.make_tensor_value_info("logit", T.FLOAT, ["N", v])], [nh.from_array(wj, "wj")]), "joiner.onnx", {})
    (out / "tokens.txt").write_text("<blk> 0\na 1\nb 2\n")
    return out
