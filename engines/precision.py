"""The FP16 precision rule, checked on the graph a strongly typed TensorRT network will take.

With strongly typed networks (TensorRT 10 STRONGLY_TYPED, always in 11) the engine computes in
exactly the types the ONNX graph states, so the fp16 graph itself must keep the fp16-fragile
parts in fp32. The rule for a graph meant as fp16:

1. graph inputs and outputs are float32 (docs/INTERFACES.md: casts live inside the graph);
2. every node of a precision-sensitive op type (normalisations, reductions, Exp/Log/Pow/Sqrt,
   Softmax: their range or accumulated rounding breaks in fp16) reads and writes float32;
3. every node the exporter recorded as kept in fp32 (metadata ``huma_rt.fp32_nodes``: the input
   normalisation before the first learned layer) reads float32;
4. the learned layers (Conv/MatMul/Gemm) really run in fp16: at least one takes float16 input,
   otherwise the "fp16" engine would silently be an fp32 one — unless the exporter recorded
   every one of them as kept in fp32 (a preload-only graph such as the spatial encoder, kept
   fp32 on purpose; rule 3 still checks that they really read float32).
"""

from __future__ import annotations

import logging

from huma_rt.export.checks import COMPUTE_OPS, FP32_NODES_KEY, SENSITIVE_OPS

from huma_rt._optional import require

log = logging.getLogger(__name__)



def _types(model) -> dict[str, int]:
    """Tensor name -> ONNX elem type, after shape inference."""
    onnx = require("onnx", "checking ONNX precision")
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception as exc:  # inference errors only cost us type information
        log.debug("shape inference failed (%s); using declared types only", exc)
        inferred = model
    g = inferred.graph
    types = {t.name: t.data_type for t in g.initializer}
    for v in [*g.input, *g.output, *g.value_info]:
        if v.type.HasField("tensor_type"):
            types[v.name] = v.type.tensor_type.elem_type
    for node in g.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    types[node.output[0]] = a.t.data_type
    return types


def declared_precision(model, filename: str) -> str:
    """'fp16' or 'fp32': the exporter's metadata, else the file name (x.fp16.onnx)."""
    props = {p.key: p.value for p in model.metadata_props}
    if props.get("huma_rt.precision") in ("fp16", "fp32"):
        return props["huma_rt.precision"]
    return "fp16" if ".fp16." in filename else "fp32"


def precision_problems(model, precision: str, name: str) -> list[str]:
    """Violations of the rule above (only rule 1 for fp32 graphs)."""
    onnx = require("onnx", "checking ONNX precision")
    low = {onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16}
    kind = onnx.TensorProto.DataType.Name
    types = _types(model)
    g = model.graph
    problems = []
    for v in [*g.input, *g.output]:
        t = v.type.tensor_type.elem_type
        if t in low:
            problems.append(f"{name}: graph {'input' if v in g.input else 'output'} '{v.name}' is {kind(t)}; must be FLOAT (casts belong inside)")
    if precision != "fp16":
        return problems
    recorded = {p.key: p.value for p in model.metadata_props}.get(FP32_NODES_KEY, "")
    keep = {s for s in recorded.split(",") if s}
    fp16_compute = False
    for node in g.node:
        ins = [types.get(i) for i in node.input if i]
        outs = [types.get(o) for o in node.output if o]
        label = f"{node.op_type} '{node.name or node.output[0]}'"
        if node.op_type in SENSITIVE_OPS and any(t in low for t in ins + outs):
            problems.append(f"{name}: precision-sensitive {label} runs in fp16; it must read and write FLOAT")
        elif node.name in keep and any(t in low for t in ins):
            problems.append(f"{name}: {label} was kept in fp32 by the exporter but reads fp16 input")
        if node.op_type in COMPUTE_OPS and any(t in low for t in ins):
            fp16_compute = True
    compute = [n.name for n in g.node if n.op_type in COMPUTE_OPS]
    fp32_by_design = bool(compute) and all(c in keep for c in compute)
    if not fp16_compute and not fp32_by_design:
        problems.append(f"{name}: declared fp16 but no Conv/MatMul/Gemm takes fp16 input; the engine would be fp32")
    return problems
