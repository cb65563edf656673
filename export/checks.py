"""Checks on exported ONNX graphs; imports no torch (engines/ reuses them).

- ``check_graph``: onnx.checker (full check with shape inference).
- ``unsupported_ops``: ops outside TensorRT's supported ONNX op set (``trt_ops.txt``) or an
  opset outside the range that TensorRT version parses.
- ``parity``: onnxruntime CPU outputs against reference outputs (computed by PyTorch in
  export/onnx_export.py) with relative error ``max|ort - ref| / max|ref|`` per output.
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from huma_rt._optional import require
from huma_rt.errors import FormatError

log = logging.getLogger(__name__)

TRT_OPS_FILE = Path(__file__).with_name("trt_ops.txt")
FP32_TOLERANCE = 1e-4
FP16_TOLERANCE = 1e-2

# The FP16 contract shared by the exporter (export/fp16.py) and the engine build's precision
# rule (engines/precision.py); defined here because this module needs neither torch nor
# onnxconverter-common. Ops whose fp16 range or rounding hurts: statistics, exponentials and
# reductions stay fp32; Conv/MatMul/Gemm are the learned layers that run fp16.
SENSITIVE_OPS = frozenset(
    "Exp Log Pow Sqrt Reciprocal Softmax LogSoftmax Erf ReduceMean ReduceSum ReduceSumSquare "
    "ReduceL2 ReduceLogSumExp ReduceProd LayerNormalization BatchNormalization "
    "InstanceNormalization GroupNormalization".split()
)
COMPUTE_OPS = frozenset({"Conv", "MatMul", "Gemm"})
FP32_NODES_KEY = "huma_rt.fp32_nodes"  # model metadata: nodes the exporter kept in fp32


@dataclass(frozen=True)
class TrtOpSet:
    """TensorRT's supported ONNX ops and opset range, as listed in trt_ops.txt."""

    ops: frozenset[str]
    min_opset: int
    max_opset: int
    source: str


@functools.lru_cache(maxsize=4)
def load_trt_ops(path: str | Path = TRT_OPS_FILE) -> TrtOpSet:
    """Parse an op list: one op per line, '#' comments, '# min_opset N' / '# max_opset N'."""
    p = Path(path)
    if not p.is_file():
        raise FormatError(f"TensorRT op list {p} does not exist")
    ops, source, bounds = set(), [], {"min_opset": 1, "max_opset": 10**6}
    for line in p.read_text().splitlines():
        line = line.strip()
        if line.startswith("#"):
            words = line[1:].split()
            if len(words) == 2 and words[0] in bounds:
                bounds[words[0]] = int(words[1])
            elif line[1:].strip().startswith("Source:"):
                source.append(line[1:].strip())
        elif line:
            ops.add(line)
    return TrtOpSet(frozenset(ops), bounds["min_opset"], bounds["max_opset"], " ".join(source))


def _onnx():
    return require("onnx", "checking exported ONNX graphs")


def load_model(path: str | Path):
    """onnx.load with a FormatError for a missing or unreadable file."""
    onnx = _onnx()
    p = Path(path)
    if not p.is_file():
        raise FormatError(f"ONNX model {p} does not exist")
    try:
        return onnx.load(str(p))
    except Exception as exc:  # protobuf raises its own DecodeError types
        raise FormatError(f"{p} is not a readable ONNX model: {exc}") from exc


def check_graph(path: str | Path) -> None:
    """onnx.checker full check of the model at ``path``; FormatError naming the failure."""
    onnx = _onnx()
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise FormatError(f"{path} fails onnx.checker: {exc}") from exc


def default_opset(model) -> int:
    """Version of the default ONNX domain the model imports."""
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    raise FormatError("model imports no default-domain ONNX opset")


def unsupported_ops(model, trt: TrtOpSet | None = None) -> list[str]:
    """Ops (as 'domain::Op' for custom domains) and opset problems TensorRT would refuse.

    Empty when every node (subgraphs included) is in ``trt.ops`` and the opset is in range.
    """
    trt = trt or load_trt_ops()
    bad: set[str] = set()
    opset = default_opset(model)
    if not trt.min_opset <= opset <= trt.max_opset:
        bad.add(f"opset {opset} (TensorRT parses {trt.min_opset}..{trt.max_opset})")

    def visit(graph) -> None:
        for node in graph.node:
            if node.domain not in ("", "ai.onnx"):
                bad.add(f"{node.domain}::{node.op_type}")
            elif node.op_type not in trt.ops:
                bad.add(node.op_type)
            for attr in node.attribute:
                for sub in [attr.g, *attr.graphs]:
                    if sub is not None and len(sub.node):
                        visit(sub)

    visit(model.graph)
    return sorted(bad)


def op_types(model) -> list[str]:
    """Sorted distinct op types of the main graph."""
    return sorted({n.op_type for n in model.graph.node})


def relative_error(actual: np.ndarray, reference: np.ndarray) -> float:
    """max|actual - reference| / max|reference| (absolute error when the reference is all zero)."""
    actual = np.asarray(actual, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if actual.shape != reference.shape:
        raise FormatError(f"output shape {actual.shape} differs from the reference shape {reference.shape}")
    if reference.size == 0:
        return 0.0
    diff = float(np.max(np.abs(actual - reference)))
    scale = float(np.max(np.abs(reference)))
    return diff / scale if scale > 0 else diff


def run_onnxruntime(path: str | Path, inputs: dict[str, np.ndarray], threads: int = 1) -> dict[str, np.ndarray]:
    """Run the model at ``path`` once on onnxruntime's CPU provider -> {output name: array}."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    try:
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
        raise FormatError(f"onnxruntime cannot load {path}: {exc}") from exc
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, inputs), strict=True))


@dataclass
class ParityRow:
    """One output of one graph compared with PyTorch."""

    model: str
    output: str
    shape: list[int]
    max_abs_error: float
    rel_error: float
    tolerance: float

    @property
    def passed(self) -> bool:
        return bool(self.rel_error <= self.tolerance)

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}


def parity(
    model: str, path: str | Path, inputs: dict[str, np.ndarray], reference: dict[str, np.ndarray], tolerance: float
) -> list[ParityRow]:
    """Compare onnxruntime CPU on ``inputs`` with ``reference`` outputs, one row per output."""
    got = run_onnxruntime(path, inputs)
    missing = sorted(set(reference) - set(got))
    if missing:
        raise FormatError(f"{path} lacks outputs {missing}; it has {sorted(got)}")
    rows = []
    for name, ref in reference.items():
        err = relative_error(got[name], ref)
        abs_err = float(np.max(np.abs(got[name].astype(np.float64) - ref))) if ref.size else 0.0
        rows.append(ParityRow(model, name, list(ref.shape), abs_err, err, tolerance))
    return rows


def format_table(rows: list[ParityRow]) -> str:
    """Markdown table of parity rows."""
    lines = [
        "| model | output | shape | max abs error | max rel error | tolerance | ok |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        shape = "x".join(str(s) for s in r.shape)
        ok = "yes" if r.passed else "NO"
        lines.append(
            f"| {r.model} | {r.output} | {shape} | {r.max_abs_error:.2e} | {r.rel_error:.2e} | {r.tolerance:.0e} | {ok} |"
        )
    return "\n".join(lines)


def write_report(path: str | Path, report: dict) -> Path:
    """Write ``report`` as indented JSON to ``path``."""
    p = Path(path)
    p.write_text(json.dumps(report, indent=2, sort_keys=False) + "\n")
    return p
