"""config.pbtxt as tritonclient's ModelConfig protobuf: build, write, parse, compare with ONNX.

Configs are built as protobuf messages and written with text_format, so every file we write is
by construction something Triton's own schema parses; ``parse_config`` is the validator used on
any repository (ours or hand-edited).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from huma_rt._optional import require
from huma_rt.errors import FormatError


def pb():
    """tritonclient's model_config_pb2 module (Triton's ModelConfig schema)."""
    return require("tritonclient.grpc.model_config_pb2", "writing Triton model configs")


def text_format():
    return require("google.protobuf.text_format", "writing Triton model configs")


@dataclass(frozen=True)
class Tensor:
    """One input/output: name, Triton dtype name ("TYPE_FP32"), dims without the batch dim."""

    name: str
    dtype: str
    dims: tuple[int, ...]
    reshape: tuple[int, ...] | None = None  # shape the model receives, when it differs


ONNX_TO_TRITON = {1: "TYPE_FP32", 10: "TYPE_FP16", 6: "TYPE_INT32", 7: "TYPE_INT64", 9: "TYPE_BOOL", 11: "TYPE_FP64"}


def add_io(config, inputs: list[Tensor], outputs: list[Tensor]) -> None:
    m = pb()
    for t in inputs:
        msg = config.input.add(name=t.name, data_type=m.DataType.Value(t.dtype), dims=list(t.dims))
        if t.reshape is not None:
            msg.reshape.shape.extend(t.reshape)
    for t in outputs:
        config.output.add(name=t.name, data_type=m.DataType.Value(t.dtype), dims=list(t.dims))


def set_params(config, params: dict[str, str]) -> None:
    for key, value in params.items():
        config.parameters[key].string_value = str(value)


def to_text(config) -> str:
    return text_format().MessageToString(config)


def parse_config(path: str | Path):
    """Parse a config.pbtxt with Triton's schema; FormatError names the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise FormatError(f"{path} does not exist")
    config = pb().ModelConfig()
    try:
        text_format().Parse(path.read_text(), config)
    except Exception as exc:  # text_format.ParseError, UnicodeDecodeError
        raise FormatError(f"{path} is not a valid Triton model config: {exc}") from exc
    if not config.name:
        raise FormatError(f"{path} has no model name")
    if config.name != path.parent.name:
        raise FormatError(f"{path} names model '{config.name}' but lives in folder '{path.parent.name}'")
    return config


def dtype_name(value: int) -> str:
    return pb().DataType.Name(value)
