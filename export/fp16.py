"""fp32 ONNX graph -> fp16 graph with fp32 inputs/outputs (casts inside).

Weights and compute become fp16 (what TensorRT 11's strongly typed networks need for an FP16
engine), except where fp16 would lose accuracy that matters:

- the input preprocessing: every node whose float inputs all come from graph inputs,
  initializers or other such nodes, i.e. everything before the first Conv/MatMul/Gemm (the
  encoder's mel normalisation; the spatial encoder's bbox normalisation and tri-plane lookup,
  which runs once at preload, so fp32 costs nothing per frame);
- precision-sensitive op types (exponentials, logarithms, powers, reductions, normalisations),
  should a model ever contain them.
"""

from __future__ import annotations

import logging

import numpy as np
import onnx
from onnx import numpy_helper
from onnxconverter_common import float16

from .checks import COMPUTE_OPS, FP32_NODES_KEY, SENSITIVE_OPS

log = logging.getLogger(__name__)

# fp16's smallest subnormal is 2^-24; IEEE rounding sends |x| <= 2^-25 to zero. The converter's
# default instead clamps every |x| < 1e-7 up to +-1e-7 (a trained weight of 1e-37 became 1e-7,
# with a UserWarning each). Weights that round to zero are flushed here, and the converter's
# clamp is set below the subnormal range, so every weight gets exactly np.float16's rounding.
FP16_ROUNDS_TO_ZERO = 2.0**-25


def preprocessing_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes that only transform graph inputs before the first learned layer."""
    fixed = {i.name for i in model.graph.input} | {t.name for t in model.graph.initializer}
    names = []
    for node in model.graph.node:  # ONNX graphs are topologically sorted
        inputs = [i for i in node.input if i]
        if node.op_type in COMPUTE_OPS or not all(i in fixed for i in inputs):
            continue
        fixed.update(node.output)
        names.append(node.name)
    return names


def to_fp16(model: onnx.ModelProto, *, keep_all: bool = False) -> onnx.ModelProto:
    """Return an fp16 copy of fp32 ``model``: fp16 weights/compute, fp32 I/O, sensitive parts fp32.

    ``keep_all`` returns the fp32 graph itself, every node recorded as kept in fp32: for graphs
    that run once at preload, where fp16 only costs accuracy (rounding the trained tri-plane
    weights alone moves the spatial features by ~2e-2 of their range, over the 1e-2 bound).
    """
    model = onnx.ModelProto.FromString(model.SerializeToString())
    for i, node in enumerate(model.graph.node):
        if not node.name:  # the block list works by node name
            node.name = f"{node.op_type}_{i}"
    if keep_all:
        update_props(model, {FP32_NODES_KEY: ",".join(n.name for n in model.graph.node)})
        return model
    keep = preprocessing_nodes(model)
    keep += [n.name for n in model.graph.node if n.op_type in SENSITIVE_OPS and n.name not in keep]
    log.debug("fp16 conversion keeps %d nodes in fp32: %s", len(keep), keep)
    flushed = flush_fp16_underflow(model, keep)
    if flushed:
        log.debug("fp16 conversion: %d weights below fp16's range rounded to 0", flushed)
    converted = float16.convert_float_to_float16(
        model,
        min_positive_val=FP16_ROUNDS_TO_ZERO,
        keep_io_types=True,
        op_block_list=sorted(set(float16.DEFAULT_OP_BLOCK_LIST) | SENSITIVE_OPS),
        node_block_list=keep,
    )
    update_props(converted, {FP32_NODES_KEY: ",".join(keep)})
    return converted


def flush_fp16_underflow(model: onnx.ModelProto, fp32_nodes: list[str]) -> int:
    """Set to 0, in place, the fp32 weights that fp16 rounds to zero; returns how many.

    Initializers read by a node that stays fp32 keep their values (they are not converted).
    """
    keep = set(fp32_nodes)
    kept_inputs = {i for n in model.graph.node if n.name in keep for i in n.input}
    count = 0
    for init in model.graph.initializer:
        if init.data_type != onnx.TensorProto.FLOAT or init.name in kept_inputs:
            continue
        w = numpy_helper.to_array(init)
        tiny = (w != 0) & (np.abs(w) <= FP16_ROUNDS_TO_ZERO)
        if tiny.any():
            init.CopyFrom(numpy_helper.from_array(np.where(tiny, np.float32(0), w), init.name))
            count += int(tiny.sum())
    return count




def update_props(model: onnx.ModelProto, props: dict[str, str]) -> None:
    """Add or replace metadata_props entries of ``model`` (keeping the others)."""
    merged = {p.key: p.value for p in model.metadata_props} | props
    onnx.helper.set_model_props(model, merged)


def fp32_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes ``to_fp16`` kept in fp32 (recorded in the model's metadata)."""
    value = {p.key: p.value for p in model.metadata_props}.get(FP32_NODES_KEY, "")
    return [s for s in value.split(",") if s]
