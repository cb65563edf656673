"""Read and append ONNX model metadata (``metadata_props``) without the onnx package.

ModelProto field 14 is a repeated ``StringStringEntryProto {key = 1; value = 2}``. Protobuf
concatenates repeated fields, so appending serialized entries to a model's bytes adds metadata
without parsing (or copying through memory twice) the weights. Reading walks the top-level
fields and seeks past the rest (the graph holds the weights), so it is cheap on large models.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from huma_rt.errors import FormatError

_METADATA_FIELD = 14


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint((number << 3) | 2) + _varint(len(payload)) + payload


def encode_metadata(meta: dict[str, str]) -> bytes:
    """Serialized metadata_props entries, to append to a ModelProto's bytes."""
    return b"".join(
        _field(_METADATA_FIELD, _field(1, str(k).encode()) + _field(2, str(v).encode()))
        for k, v in meta.items()
    )


def _read_varint(f: BinaryIO) -> int | None:
    shift = result = 0
    while True:
        byte = f.read(1)
        if not byte:
            if shift:
                raise ValueError("truncated varint")
            return None
        result |= (byte[0] & 0x7F) << shift
        if not byte[0] & 0x80:
            return result
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _parse_entry(buf: bytes) -> tuple[str, str]:
    import io

    f, key, value = io.BytesIO(buf), "", ""
    while (tag := _read_varint(f)) is not None:
        if tag & 7 != 2:
            raise ValueError(f"unexpected wire type {tag & 7} in a metadata entry")
        data = f.read(_read_varint(f) or 0)
        if tag >> 3 == 1:
            key = data.decode("utf-8")
        elif tag >> 3 == 2:
            value = data.decode("utf-8")
    return key, value


def read_metadata(path: str | Path) -> dict[str, str]:
    """The ``metadata_props`` of the ONNX model at ``path`` (later entries win, as in ORT)."""
    return scan_model(path)[0]


def scan_model(path: str | Path) -> tuple[dict[str, str], set[int]]:
    """(metadata_props, top-level field numbers present) of an ONNX file; FormatError if the
    file is not a well-formed protobuf message. A real model has field 7 (its graph)."""
    path = Path(path)
    meta: dict[str, str] = {}
    seen: set[int] = set()
    size = path.stat().st_size
    try:
        with path.open("rb") as f:
            while (tag := _read_varint(f)) is not None:
                wire = tag & 7
                seen.add(tag >> 3)
                if wire == 0:
                    _read_varint(f)
                elif wire == 2:
                    length = _read_varint(f) or 0
                    if f.tell() + length > size:
                        raise ValueError("field runs past the end of the file")
                    if tag >> 3 == _METADATA_FIELD:
                        k, v = _parse_entry(f.read(length))
                        meta[k] = v
                    else:
                        f.seek(length, 1)
                elif wire == 1:
                    f.seek(8, 1)
                elif wire == 5:
                    f.seek(4, 1)
                else:
                    raise ValueError(f"unsupported wire type {wire}")
    except (ValueError, UnicodeDecodeError) as exc:
        raise FormatError(f"{path} is not a valid ONNX model file: {exc}") from exc
    return meta, seen
