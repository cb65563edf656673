"""A Llama decoder as an ONNX graph, built from a GGUF's quantized weights (no torch anywhere).

One graph serves prompt and generation: ``input_ids`` int64 [S] and, per layer, ``past.<l>``
float32 [2, n_head_kv, P, head_dim] (keys, values) -> ``logits`` float32 [n_vocab] of the last
position and ``present.<l>`` [2, n_head_kv, P + S, head_dim]. Positions run P .. P+S-1.

Weights stay 4-bit: onnxruntime's ``com.microsoft.MatMulNBits`` reads Q4_1's blocks of 32
almost directly. It computes ``(q - 8) * scale`` per block, Q4_1 stores ``q * d + m``, so
``W = W_sym + M`` with ``M`` constant per block, and ``x @ M^T = blocksum(x) @ m'^T`` with
``m' = m + 8 d``: one small float MatMul per projection keeps the result exact. Q8_0 (the tied
embedding / LM head) maps to 8-bit MatMulNBits with zero point 128. ``accuracy_level=4`` lets
onnxruntime quantize the activations to int8 per block (as llama.cpp does for Q4_1 dot
products): ~3x faster on one core, logits within ~1e-2 of float. RoPE is ggml's "normal"
(adjacent pairs) rotation, which is what the GGUF converter permuted the Q/K rows for.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from huma_rt.speech.llm_gguf import Q4_1, Q8_0, GgufModel, QTensor

log = logging.getLogger(__name__)

OPSET = 18
_BLOCK = 32
_NEG = -1.0e9  # additive mask; finite, so a fully masked row could never produce NaN


def q4_1_blocks(raw: np.ndarray, cols: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Q4_1 rows uint8 [N, nb*20] -> (MatMulNBits B uint8 [N, nb, 16], scale float32 [N, nb],
    block offset m' = m + 8*d float32 [N, nb]). ggml keeps element j in the low nibble of byte j
    and element j+16 in its high nibble; MatMulNBits wants elements 2i, 2i+1 in byte i."""
    n, nb = raw.shape[0], cols // _BLOCK
    blocks = np.ascontiguousarray(raw).reshape(n, nb, 20)
    d = blocks[..., 0:2].copy().view(np.float16)[..., 0].astype(np.float32)
    m = blocks[..., 2:4].copy().view(np.float16)[..., 0].astype(np.float32)
    qs = blocks[..., 4:]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=-1)  # [N, nb, 32] in element order
    packed = (q[..., 0::2] | (q[..., 1::2] << 4)).astype(np.uint8)
    return packed, d, m + 8.0 * d


def q8_0_blocks(raw: np.ndarray, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Q8_0 rows uint8 [N, nb*34] -> (MatMulNBits 8-bit B uint8 [N, nb, 32] = q + 128, scale [N, nb])."""
    n, nb = raw.shape[0], cols // _BLOCK
    blocks = np.ascontiguousarray(raw).reshape(n, nb, 34)
    d = blocks[..., 0:2].copy().view(np.float16)[..., 0].astype(np.float32)
    u = blocks[..., 2:] ^ np.uint8(0x80)  # int8 two's complement -> offset binary (q + 128)
    return np.ascontiguousarray(u), d


class _Graph:
    """Accumulates nodes and initializers; names are made unique by a counter."""

    def __init__(self, accuracy_level: int) -> None:
        from onnx import helper, numpy_helper

        self.h, self.nh = helper, numpy_helper
        self.nodes: list = []
        self.inits: list = []
        self.acc = accuracy_level
        self._n = 0
        self._consts: dict = {}
        self._q8: dict[str, tuple[str, str]] = {}

    def name(self, hint: str) -> str:
        self._n += 1
        return f"{hint}_{self._n}"

    def init(self, hint: str, array: np.ndarray) -> str:
        name = self.name(hint)
        array = np.asarray(array)  # not ascontiguousarray: it turns a scalar into shape [1]
        self.inits.append(self.nh.from_array(array if array.flags.c_contiguous else array.copy(), name))
        return name

    def const(self, values, dtype=np.int64) -> str:
        key = (tuple(np.ravel(values).tolist()), np.dtype(dtype).str, np.shape(values))
        if key not in self._consts:
            self._consts[key] = self.init("c", np.array(values, dtype=dtype))
        return self._consts[key]

    def op(self, op_type: str, inputs: list[str], n_out: int = 1, domain: str = "", **attrs):
        outs = [self.name(op_type.lower()) for _ in range(n_out)]
        self.nodes.append(self.h.make_node(op_type, inputs, outs, domain=domain or None, **attrs))
        return outs[0] if n_out == 1 else outs

    # --- building blocks -------------------------------------------------------------------

    def rms_norm(self, x: str, weight: np.ndarray, eps: float) -> str:
        """x * weight / sqrt(mean(x^2) + eps), in the op pattern onnxruntime fuses."""
        var = self.op("ReduceMean", [self.op("Pow", [x, self.const(2.0, np.float32)]), self.const([-1])], keepdims=1)
        std = self.op("Sqrt", [self.op("Add", [var, self.const(eps, np.float32)])])
        return self.op("Mul", [self.op("Div", [x, std]), self.init("norm_w", weight.astype(np.float32))])

    def skip_norm(self, delta: str, x: str, weight: np.ndarray, eps: float) -> tuple[str, str]:
        """(rms_norm(x + delta), x + delta) in one ``SkipSimplifiedLayerNormalization``: the
        residual add and the next norm, one op instead of two (of ~600 a step)."""
        from onnx import helper

        h, total = self.name("skipnorm"), self.name("residual")
        self.nodes.append(helper.make_node(
            "SkipSimplifiedLayerNormalization", [delta, x, self.init("norm_w", weight.astype(np.float32))],
            [h, "", "", total], domain="com.microsoft", epsilon=eps))  # fmt: skip
        return h, total

    def q8(self, t: QTensor) -> tuple[str, str]:
        """(B uint8 [N, nb, 32], scales [N*nb]) initializers of a Q8_0 weight, made once: the tied
        embedding table and LM head share them."""
        if t.name not in self._q8:
            u, d = q8_0_blocks(t.raw, t.cols)
            self._q8[t.name] = (self.init("w8", u), self.init("s8", d.reshape(-1)))
        return self._q8[t.name]

    def linear(self, x: str, tensors: list[QTensor]) -> str:
        """x [S, K] @ concat(tensors)^T -> [S, sum N]: one MatMulNBits per run of equal types."""
        outs, i = [], 0
        while i < len(tensors):
            j = i + 1
            while j < len(tensors) and tensors[j].qtype == tensors[i].qtype:
                j += 1
            outs.append(self._linear_same(x, tensors[i:j]))
            i = j
        return outs[0] if len(outs) == 1 else self.op("Concat", outs, axis=-1)

    def _linear_same(self, x: str, tensors: list[QTensor]) -> str:
        k, n = tensors[0].cols, sum(t.raw.shape[0] for t in tensors)
        kw = {"domain": "com.microsoft", "K": k, "N": n, "block_size": _BLOCK, "accuracy_level": self.acc}
        if tensors[0].qtype == Q8_0:
            if len(tensors) == 1:
                b, s = self.q8(tensors[0])
            else:
                parts = [q8_0_blocks(t.raw, k) for t in tensors]
                b = self.init("w8", np.concatenate([p[0] for p in parts]))
                s = self.init("s8", np.concatenate([p[1] for p in parts]).reshape(-1))
            return self.op("MatMulNBits", [x, b, s], bits=8, **kw)
        assert tensors[0].qtype == Q4_1, tensors[0].qtype
        parts = [q4_1_blocks(t.raw, k) for t in tensors]
        b = np.concatenate([p[0] for p in parts])
        s = np.concatenate([p[1] for p in parts]).reshape(-1)
        off = np.concatenate([p[2] for p in parts])
        y = self.op("MatMulNBits", [x, self.init("w4", b), self.init("s4", s)], bits=4, **kw)
        # blocksum(x) [S, nb] as a MatMul with a 0/1 block indicator [K, nb]; Gemm adds y: 2 ops, not 4
        indicator = np.kron(np.eye(k // _BLOCK, dtype=np.float32), np.ones((_BLOCK, 1), np.float32))
        sums = self.op("MatMul", [x, self.const(indicator, np.float32)])
        return self.op("Gemm", [sums, self.init("off", off.T), y])


def _f32(t: QTensor) -> np.ndarray:
    return np.asarray(t.raw, dtype=np.float32)


def build_decoder(model: GgufModel, accuracy_level: int = 4, fused_attention: bool = True, max_context: int = 2048):
    """The ONNX ModelProto of ``model``'s decoder (see the module docstring for its signature).

    fused_attention: onnxruntime's ``GroupQueryAttention`` (RoPE, KV append, causal softmax in one
    op); False spells attention out in standard ops (a slower twin, kept to compare against).
    max_context: positions beyond it are refused by the fused op (its RoPE tables' length).
    """
    from onnx import TensorProto, helper

    sp = model.spec
    hd, hkv = sp.head_dim, sp.n_head_kv
    g = _Graph(accuracy_level)
    T = model.tensor

    ids = "input_ids"
    seq = g.op("Shape", [ids])  # [1] = S
    past0 = g.op("Shape", ["past_key.0"], start=2, end=3)  # [1] = P
    total = g.op("Add", [past0, seq])
    pos = g.op("Range", [g.op("Squeeze", [past0]), g.op("Squeeze", [total]), g.const(1)])  # P .. P+S-1
    inv = rope_frequencies(sp.rope_base, hd)
    if fused_attention:
        angles = np.arange(max_context, dtype=np.float64)[:, None] * inv[None, :]  # [max_context, hd/2]
        ctx = {"cos": g.init("cos", np.cos(angles).astype(np.float32)), "sin": g.init("sin", np.sin(angles).astype(np.float32)),
               "seqlens": g.op("Cast", [g.op("Sub", [total, g.const([1])])], to=TensorProto.INT32),
               "total": g.op("Cast", [g.op("Squeeze", [total])], to=TensorProto.INT32),
               "pos": g.op("Unsqueeze", [pos, g.const([0])])}  # fmt: skip
    else:
        ctx = _unfused_context(g, sp, pos, total, inv)

    x = _embed(g, T("token_embd.weight"), ids)
    h = g.rms_norm(x, _f32(T("blk.0.attn_norm.weight")), sp.rms_eps)
    for layer in range(sp.n_layer):
        w = lambda n, i=layer: T(f"blk.{i}.{n}.weight")  # noqa: E731
        qkv = g.linear(h, [w("attn_q"), w("attn_k"), w("attn_v")])  # [S, (Hq + 2 Hkv) * hd]
        io = (f"past_key.{layer}", f"past_value.{layer}", f"present_key.{layer}", f"present_value.{layer}")
        if fused_attention:
            att = _gqa(g, sp, qkv, io, ctx)
        else:
            att = _attention_ops(g, sp, qkv, io, ctx)
        h, x = g.skip_norm(g.linear(att, [w("attn_output")]), x, _f32(w("ffn_norm")), sp.rms_eps)
        gate, up = g.op("Split", [g.linear(h, [w("ffn_gate"), w("ffn_up")]), g.const([sp.n_ff, sp.n_ff])], n_out=2,
                        axis=-1)  # fmt: skip
        act = g.op("Mul", [g.op("Mul", [gate, g.op("Sigmoid", [gate])]), up])  # SwiGLU
        after = f"blk.{layer + 1}.attn_norm.weight" if layer + 1 < sp.n_layer else "output_norm.weight"
        h, x = g.skip_norm(g.linear(act, [w("ffn_down")]), x, _f32(T(after)), sp.rms_eps)

    last = g.op("Gather", [h, g.op("Sub", [g.op("Squeeze", [seq]), g.const(1)])], axis=0)  # [n_embd], normed
    last = g.op("Unsqueeze", [last, g.const([0])])
    head = model.tensors.get("output.weight") or T("token_embd.weight")  # SmolLM2 ties them
    g.nodes.append(helper.make_node("Squeeze", [g.linear(last, [head]), g.const([0])], ["logits"]))

    kv = [1, hkv, None, hd]
    inputs = [helper.make_tensor_value_info(ids, TensorProto.INT64, ["seq"])]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, None)]  # [n_vocab]
    for i in range(sp.n_layer):
        inputs += [helper.make_tensor_value_info(f"past_{kind}.{i}", TensorProto.FLOAT, [1, hkv, "past", hd])
                   for kind in ("key", "value")]  # fmt: skip
        outputs += [helper.make_tensor_value_info(f"present_{kind}.{i}", TensorProto.FLOAT, kv) for kind in ("key", "value")]
    graph = helper.make_graph(g.nodes, "llama_decoder", inputs, outputs, g.inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid("com.microsoft", 1)],
                             producer_name="huma_rt.speech.llm_onnx")  # fmt: skip


def _gqa(g: _Graph, sp, qkv: str, io: tuple[str, str, str, str], ctx: dict) -> str:
    """GroupQueryAttention on the packed projections; it appends to the KV cache and applies RoPE
    (interleaved = ggml's adjacent-pair rotation) at ``position_ids``."""
    from onnx import helper

    out = g.name("gqa")
    g.nodes.append(helper.make_node(
        "GroupQueryAttention",
        [g.op("Unsqueeze", [qkv, g.const([0])]), "", "", io[0], io[1], ctx["seqlens"], ctx["total"], ctx["cos"], ctx["sin"],
         ctx["pos"]],
        [out, io[2], io[3]], domain="com.microsoft", num_heads=sp.n_head, kv_num_heads=sp.n_head_kv, do_rotary=1,
        rotary_interleaved=1))  # fmt: skip
    return g.op("Squeeze", [out, g.const([0])])


def _unfused_context(g: _Graph, sp, pos: str, total: str, inv: np.ndarray) -> dict:
    """RoPE tables [S, 1, hd/2, 1] and the causal mask [nrep*S, P+S] of the spelled-out attention."""
    from onnx import TensorProto

    ang = g.op("Mul", [g.op("Unsqueeze", [g.op("Cast", [pos], to=TensorProto.FLOAT), g.const([1])]),
                       g.const(inv.astype(np.float32)[None, :], np.float32)])  # fmt: skip
    ang = g.op("Unsqueeze", [ang, g.const([1, 3])])
    keys = g.op("Range", [g.const(0), g.op("Squeeze", [total]), g.const(1)])
    after = g.op("Greater", [g.op("Unsqueeze", [keys, g.const([0])]), g.op("Unsqueeze", [pos, g.const([1])])])
    mask = g.op("Where", [after, g.const(_NEG, np.float32), g.const(0.0, np.float32)])  # key j > P+i: hidden
    return {"cos": g.op("Cos", [ang]), "sin": g.op("Sin", [ang]),
            "mask": g.op("Tile", [mask, g.const([sp.n_head // sp.n_head_kv, 1])])}  # fmt: skip


def _attention_ops(g: _Graph, sp, qkv: str, io: tuple[str, str, str, str], ctx: dict) -> str:
    """Attention in standard ops: RoPE, KV concat, grouped scores, causal softmax -> [S, n_embd]."""
    from onnx import helper

    hd, hkv = sp.head_dim, sp.n_head_kv
    heads = g.op("Reshape", [qkv, g.const([0, sp.n_head + 2 * hkv, hd])])  # [S, Hq+2Hkv, hd]
    qk = _rope(g, g.op("Slice", [heads, g.const([0]), g.const([sp.n_head + hkv]), g.const([1])]), ctx["cos"], ctx["sin"], hd)
    q, k = g.op("Split", [qk, g.const([sp.n_head, hkv])], n_out=2, axis=1)
    v = g.op("Slice", [heads, g.const([sp.n_head + hkv]), g.const([sp.n_head + 2 * hkv]), g.const([1])])
    for new, past, present in ((k, io[0], io[2]), (v, io[1], io[3])):
        g.nodes.append(helper.make_node("Concat", [past, g.op("Unsqueeze", [g.op("Transpose", [new], perm=[1, 0, 2]),
                                                                          g.const([0])])], [present], axis=2))  # fmt: skip
    kk, vv = g.op("Squeeze", [io[2], g.const([0])]), g.op("Squeeze", [io[3], g.const([0])])  # [Hkv, T, hd]
    # head h uses key/value head h // nrep: group the query heads per kv head
    qg = g.op("Reshape", [g.op("Transpose", [q], perm=[1, 0, 2]), g.const([hkv, -1, hd])])  # [Hkv, nrep*S, hd]
    qg = g.op("Mul", [qg, g.const(1.0 / math.sqrt(hd), np.float32)])
    scores = g.op("Add", [g.op("MatMul", [qg, g.op("Transpose", [kk], perm=[0, 2, 1])]), ctx["mask"]])
    att = g.op("MatMul", [g.op("Softmax", [scores], axis=-1), vv])  # [Hkv, nrep*S, hd]
    att = g.op("Reshape", [att, g.const([sp.n_head, -1, hd])])
    return g.op("Reshape", [g.op("Transpose", [att], perm=[1, 0, 2]), g.const([0, sp.n_embd])])


def _embed(g: _Graph, table: QTensor, ids: str) -> str:
    """Rows of the quantized embedding table, dequantized in the graph: [S, n_embd]."""
    k = table.cols
    if table.qtype == Q8_0:
        u, d = g.q8(table)
        rows = g.op("Sub", [g.op("Cast", [g.op("Gather", [u, ids], axis=0)], to=1), g.const(128.0, np.float32)])
        d = g.op("Reshape", [d, g.const([table.raw.shape[0], k // _BLOCK])])
        scale = g.op("Unsqueeze", [g.op("Gather", [d, ids], axis=0), g.const([-1])])
        return g.op("Reshape", [g.op("Mul", [rows, scale]), g.const([-1, k])])
    packed, d, off = q4_1_blocks(table.raw, k)
    p = g.op("Gather", [g.init("emb4", packed), ids], axis=0)  # [S, nb, 16]
    lo = g.op("BitwiseAnd", [p, g.const(0x0F, np.uint8)])
    hi = g.op("BitShift", [p, g.const(4, np.uint8)], direction="RIGHT")
    q = g.op("Reshape", [g.op("Concat", [g.op("Unsqueeze", [lo, g.const([-1])]), g.op("Unsqueeze", [hi, g.const([-1])])],
                                        axis=-1), g.const([0, 0, _BLOCK])])  # fmt: skip
    q = g.op("Sub", [g.op("Cast", [q], to=1), g.const(8.0, np.float32)])
    scale = g.op("Unsqueeze", [g.op("Gather", [g.init("emb_s", d), ids], axis=0), g.const([-1])])
    shift = g.op("Unsqueeze", [g.op("Gather", [g.init("emb_m", off), ids], axis=0), g.const([-1])])
    return g.op("Reshape", [g.op("Add", [g.op("Mul", [q, scale]), shift]), g.const([-1, k])])


def rope_frequencies(base: float, hd: int) -> np.ndarray:
    """RoPE's angle per position of each pair (2i, 2i+1) of a head: base^(-2i/hd), float64 [hd/2]."""
    return 1.0 / (base ** (np.arange(0, hd, 2, dtype=np.float64) / hd))


def _rope(g: _Graph, x: str, cos: str, sin: str, hd: int) -> str:
    """ggml's normal RoPE on x [S, H, hd]: pairs (2i, 2i+1) rotate by pos * base^(-2i/hd)."""
    pairs = g.op("Reshape", [x, g.const([0, 0, hd // 2, 2])])
    a, b = g.op("Split", [pairs, g.const([1, 1])], n_out=2, axis=-1)
    ra = g.op("Sub", [g.op("Mul", [a, cos]), g.op("Mul", [b, sin])])
    rb = g.op("Add", [g.op("Mul", [a, sin]), g.op("Mul", [b, cos])])
    return g.op("Reshape", [g.op("Concat", [ra, rb], axis=-1), g.const([0, 0, hd])])
