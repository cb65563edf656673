"""The shipped speech recognizer: Moonshine tiny-en from the ``moonshine-voice==0.1.0`` wheel.

That wheel (MIT) is the only version holding the model files (later ones download at run
time); its Python code is never imported: the files are found with ``importlib.util.find_spec``.
sherpa-onnx 2.0.1 runs them (``OfflineRecognizer.from_moonshine_v2``) with a ``tokens.txt`` made
here from ``tokenizer.bin``, cached under ``cache_root()/asr/`` and keyed by the tokenizer's
sha256.

sherpa-onnx ends or crashes the process on some bad models (a valid ONNX model of the wrong
graph as decoder: a segfault), so nothing reaches it unchecked: the packaged files must match
the wheel's sha256 digests; a user's Moonshine directory is opened with onnxruntime first and
its encoder/decoder signature compared with what sherpa-onnx's Moonshine v2 code indexes.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

from huma_rt._files import atomic_write, cached_sha256
from huma_rt._optional import require
from huma_rt.errors import FormatError, MissingDependencyError

log = logging.getLogger(__name__)

PIP_SPEC = "moonshine-voice==0.1.0"
_INSTALL = f"pip install --no-deps {PIP_SPEC}"
# sha256 of the model files in the moonshine-voice 0.1.0 wheel (its RECORD lists the same)
PACKAGED_SHA256 = {
    "encoder_model.ort": "94e90a4654fc45cdfedb77c4c08e1739f48862998e58fada384b25118134f221",
    "decoder_model_merged.ort": "cf524c4862d36e9e5ab032eddc73637efd822d70e868ac575cf1a46e1e4708a0",
    "tokenizer.bin": "6884b35fd6377d4c4d32336a0bc152f36b64d1e45b6503683cdc238250a8472d",
}
PACKAGED_VOCAB = 32768
_ORT_MAGIC = b"ORTM"  # flatbuffer file identifier of an ORT-format model, at bytes 4..8
_MAX_TOKENIZER_BYTES = 16 << 20


@dataclass(frozen=True)
class MoonshineFiles:
    """A Moonshine v2 model: encoder, merged decoder, and tokenizer.bin or tokens.txt."""

    encoder: Path
    decoder: Path
    tokenizer: Path | None = None  # tokenizer.bin (converted to tokens.txt on load)
    tokens: Path | None = None  # a ready tokens.txt (sherpa-onnx's own release layout)
    packaged: bool = False


def packaged_dir() -> Path:
    """``moonshine_voice/assets/tiny-en`` of the installed wheel (the package is not imported)."""
    try:
        spec = importlib.util.find_spec("moonshine_voice")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            "the default speech recognizer (Moonshine tiny-en) comes from the 'moonshine-voice' "
            f"package, which is not installed; install it with: {_INSTALL} "
            "(or pass a sherpa-onnx model directory: --asr-model DIR / AsrConfig(model_dir=DIR))"
        )
    d = Path(list(spec.submodule_search_locations)[0]) / "assets" / "tiny-en"
    if not d.is_dir():
        raise MissingDependencyError(
            f"the installed moonshine-voice has no assets/tiny-en ({d}); only version 0.1.0 ships "
            f"the model files: {_INSTALL}"
        )
    return d


def packaged_model() -> MoonshineFiles:
    """The shipped model's files (existence checked; digests are checked by ``verify_packaged``)."""
    d = packaged_dir()
    files = {name: d / name for name in PACKAGED_SHA256}
    missing = [n for n, p in files.items() if not p.is_file()]
    if missing:
        raise FormatError(f"moonshine-voice's {d} lacks {missing}; reinstall it: {_INSTALL} --force-reinstall")
    return MoonshineFiles(files["encoder_model.ort"], files["decoder_model_merged.ort"],
                          tokenizer=files["tokenizer.bin"], packaged=True)


def cache_dir(root: str | Path | None = None) -> Path:
    """Where tokens.txt files and file digests are kept: ``<root or cache_root()>/asr``."""
    from huma_rt.speech.tts import cache_root

    return Path(root) / "asr" if root is not None else cache_root() / "asr"


def verify_packaged(files: MoonshineFiles, cache: Path) -> None:
    """FormatError unless the packaged files are byte for byte those of the 0.1.0 wheel."""
    for path in (files.encoder, files.decoder, files.tokenizer):
        assert path is not None
        want = PACKAGED_SHA256[path.name]
        got = cached_sha256(cache / "digests.json", path)
        if got != want:
            raise FormatError(
                f"{path} is not the file moonshine-voice 0.1.0 ships (sha256 {got[:16]}..., expected "
                f"{want[:16]}...): it is corrupt or was changed; reinstall with: {_INSTALL} --force-reinstall"
            )


def parse_tokenizer(data: bytes, source: str = "tokenizer.bin") -> list[bytes]:
    """Moonshine's ``tokenizer.bin`` -> the bytes of each token, in id order.

    Each token is a length (one byte; a first byte >= 128 means two: ``b1 * 128 + (b0 - 128)``)
    followed by that many bytes; length 0 is an empty token (id 31353 in tiny-en). A length
    that runs past the end of the file is a FormatError.
    """
    tokens: list[bytes] = []
    i, n = 0, len(data)
    while i < n:
        b0 = data[i]
        i += 1
        if b0 >= 128:
            if i >= n:
                raise FormatError(f"{source} is truncated: token {len(tokens)}'s two-byte length is cut off")
            length = data[i] * 128 + (b0 - 128)
            i += 1
        else:
            length = b0
        if i + length > n:
            raise FormatError(
                f"{source} is not a Moonshine tokenizer: token {len(tokens)} claims {length} bytes at "
                f"offset {i}, past the end of the file ({n} bytes)"
            )
        tokens.append(data[i : i + length])
        i += length
    if not tokens:
        raise FormatError(f"{source} is empty; expected Moonshine's tokenizer.bin")
    return tokens


def tokens_txt(tokens: list[bytes]) -> str:
    """sherpa-onnx's Moonshine v2 ``tokens.txt``: one ``<base64 of the bytes> <id>`` line a token."""
    return "".join(f"{base64.b64encode(t).decode('ascii')} {i}\n" for i, t in enumerate(tokens))


def _count_lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(1 for _ in f)


def tokenizer_vocab(tokenizer: Path) -> int:
    """Number of tokens in a tokenizer.bin (FormatError if it is malformed)."""
    return len(parse_tokenizer(_read_tokenizer(tokenizer), str(tokenizer)))


def _read_tokenizer(tokenizer: Path) -> bytes:
    size = tokenizer.stat().st_size
    if size == 0 or size > _MAX_TOKENIZER_BYTES:
        raise FormatError(f"{tokenizer} is {size} bytes; a Moonshine tokenizer.bin is 1 B .. 16 MiB")
    return tokenizer.read_bytes()


def ensure_tokens(tokenizer: Path, cache: Path, vocab: int | None = None) -> Path:
    """``cache/moonshine-tokens-<sha256[:16]>.txt`` made from ``tokenizer`` (reused when present).

    vocab: the decoder's vocabulary size; a tokenizer with another token count is refused
    (ids past its end would decode to nothing).
    """
    data = _read_tokenizer(tokenizer)
    tokens = parse_tokenizer(data, str(tokenizer))
    if vocab is not None and len(tokens) != vocab:
        raise FormatError(f"{tokenizer} has {len(tokens)} tokens; the decoder's vocabulary has {vocab}")
    out = cache / f"moonshine-tokens-{hashlib.sha256(data).hexdigest()[:16]}.txt"
    if out.is_file():
        try:
            if _count_lines(out) == len(tokens):
                return out
        except OSError:
            pass
        log.warning("regenerating %s (incomplete or unreadable)", out)
    text = tokens_txt(tokens).encode("ascii")
    try:
        atomic_write(out, text)
    except OSError as exc:  # a read-only cache: the system's temp folder instead
        fallback = Path(tempfile.gettempdir()) / "huma-rt-asr" / out.name
        log.warning("cannot write %s (%s); using %s", out, exc, fallback)
        try:
            if fallback.is_file() and _count_lines(fallback) == len(tokens):
                return fallback
            atomic_write(fallback, text)
        except OSError as exc2:
            raise FormatError(f"cannot write Moonshine's tokens.txt to {out} ({exc}) nor {fallback} ({exc2}); "
                              "set HUMA_RT_CACHE to a writable folder") from exc2
        out = fallback
    log.info("wrote %s (%d tokens)", out, len(tokens))
    return out


def check_model_file(path: Path, role: str) -> None:
    """Cheap structural check: non-empty, and an ORT-format flatbuffer (``.ort``) or an ONNX
    protobuf with a graph (``.onnx``)."""
    if not path.is_file():
        raise FormatError(f"Moonshine {role} {path} does not exist")
    size = path.stat().st_size
    if size < 16:
        raise FormatError(f"Moonshine {role} {path} is {size} bytes; not a model")
    if path.suffix == ".ort":
        with path.open("rb") as f:
            head = f.read(8)
        root = int.from_bytes(head[:4], "little")
        if head[4:8] != _ORT_MAGIC or not 8 <= root < size:
            raise FormatError(f"Moonshine {role} {path} is not an ORT-format model (no 'ORTM' header)")
    else:
        from huma_rt.speech._onnx_meta import scan_model

        if 7 not in scan_model(path)[1]:
            raise FormatError(f"Moonshine {role} {path} is not an ONNX model (no graph)")


def check_signature(encoder: Path, decoder: Path) -> int:
    """Open both models with onnxruntime and check what sherpa-onnx's Moonshine v2 code indexes
    by position; return the decoder's vocabulary size. FormatError says what does not fit.

    encoder: input 0 float audio [N, S] (optional input 1 int64 mask), output 0 [N, T, D].
    decoder: [encoder_attention_mask], input_ids, encoder_hidden_states [N, T, D], 4 * L 4-d
    past_key_values, use_cache_branch (bool); outputs logits [N, U, V] and 4 * L present states.
    """
    ort = require("onnxruntime", "checking the Moonshine model")
    opts = ort.SessionOptions()
    opts.log_severity_level = 3

    def session(path: Path, role: str):
        try:
            return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
            raise FormatError(f"Moonshine {role} {path} is not a loadable model: {str(exc)[:200]}") from exc

    enc, dec = session(encoder, "encoder"), session(decoder, "decoder")
    ein, eout = enc.get_inputs(), enc.get_outputs()
    if not 1 <= len(ein) <= 2 or ein[0].type != "tensor(float)" or len(ein[0].shape) != 2 or not eout \
            or len(eout[0].shape) != 3:
        raise FormatError(
            f"Moonshine encoder {encoder} has {len(ein)} inputs {[(i.name, i.type) for i in ein[:3]]} and "
            f"outputs {[o.name for o in eout[:3]]}; expected float audio [N, S] (+ an optional mask) -> [N, T, D]"
        )
    din, dout = dec.get_inputs(), dec.get_outputs()
    names = [i.name for i in din]
    mask = 1 if names and "encoder_attention_mask" in names[0] else 0
    states = din[mask + 2 : -1]
    problems = []
    if len(din) < mask + 7 or (len(din) - mask - 3) % 4:
        problems.append(f"{len(din)} inputs (expected [mask,] ids, encoder states, 4 x layers, use_cache_branch)")
    elif not (din[mask].type == "tensor(int64)" and "encoder_hidden_states" in din[mask + 1].name
              and din[-1].type == "tensor(bool)"
              and all("key_values" in s.name and len(s.shape) == 4 for s in states)):
        problems.append(f"inputs {names[:mask + 3]}...{names[-1:]} are not ids, encoder_hidden_states, "
                        "4-d past_key_values and a bool use_cache_branch")
    if len(dout) != 1 + len(states) or len(dout[0].shape) != 3 or not isinstance(dout[0].shape[2], int):
        problems.append(f"{len(dout)} outputs, the first {dout[0].shape if dout else None} "
                        f"(expected logits [N, U, vocab] and {len(states)} present states)")
    if not problems:
        d_enc, d_dec = eout[0].shape[2], din[mask + 1].shape[2] if len(din[mask + 1].shape) == 3 else None
        if isinstance(d_enc, int) and isinstance(d_dec, int) and d_enc != d_dec:
            problems.append(f"the encoder's width {d_enc} differs from the decoder's {d_dec} (mixed models?)")
    if problems:
        raise FormatError(f"Moonshine decoder {decoder} does not fit sherpa-onnx's Moonshine v2: "
                          + "; ".join(problems))
    return int(dout[0].shape[2])
