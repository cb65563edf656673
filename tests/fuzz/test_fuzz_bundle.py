"""Fuzz bundle loading: a real small signed bundle (tests/runtime's seeded export, packed by
huma_rt.bundle) with its manifest mutated (keys deleted, values replaced by random JSON of any
type, numbers out of range, values nested, raw bytes flipped) and its files mutated (truncated,
bytes flipped, deleted, extra files, re-hashed so the loader gets past the checksums), opened
as a folder and as a tar (plain or ``./`` member names, the archive itself truncated or
flipped). The verdict is always the same: a Bundle, or a HumaError; never another exception,
never a hang or an allocation sized by a manifest field."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from huma_rt.bundle import Bundle, open_bundle

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))
from _outcome import succeeds_or_huma_error  # noqa: E402
from _runtime_avatar import pack_small, shared_export  # noqa: E402

_NUMBERS = st.one_of(
    st.sampled_from([0, -1, 1, 2, 3, 16, 640, 16000, 4097, 2**24 + 1, 10**9, 2**31, 2**63, -(2**63), 10**30,
                     0.0, -0.0, 0.5, 1e-300, 1e308, -1e308, 25.0]),  # fmt: skip
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False, allow_infinity=False),
)
_SCALARS = st.one_of(st.none(), st.booleans(), _NUMBERS, st.text(max_size=12),
                     st.sampled_from(["<f4", "|O", "<f8", "splats/means.f32", "models/encoder.fp32.onnx", "../x", "fp16",
                                      "image", "color", "exp", "0" * 64]))  # fmt: skip
_JSON = st.recursive(_SCALARS, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                     st.dictionaries(st.text(max_size=8), kids, max_size=4)),
                     max_leaves=12)  # fmt: skip


@pytest.fixture(scope="module")
def signed(tmp_path_factory) -> tuple[Path, Path | None]:
    """(the small real bundle, its signing key): signed when cryptography is installed, so
    manifest.sig is fuzzed too; the key re-signs mutated manifests to reach the parser."""
    from huma_rt.bundle.signing import generate_keypair, has_crypto

    root = tmp_path_factory.mktemp("fuzz-bundle")
    key = generate_keypair(root / "key")[0] if has_crypto() else None
    return pack_small(shared_export(root), root / "b", sign_key=key), key


@pytest.fixture(scope="module")
def base(signed) -> Path:
    return signed[0]


def _signature(root: Path, key: Path | None, mode: str) -> None:
    """After a mutation: "resign" (a valid signature over the new manifest), "drop" it, or "keep" it."""
    if mode == "drop" or key is None:
        (root / "manifest.sig").unlink(missing_ok=True)
    elif mode == "resign":
        from huma_rt.bundle.signing import sign_manifest

        (root / "manifest.sig").write_bytes(sign_manifest((root / "manifest.json").read_bytes(), key))


_SIG = st.sampled_from(["resign", "resign", "drop", "keep"])


def _paths(value, prefix=()) -> list[tuple]:
    """Every key path in a JSON tree (the tree's own root excluded)."""
    out = []
    if isinstance(value, dict):
        for k, v in value.items():
            out.append((*prefix, k))
            out.extend(_paths(v, (*prefix, k)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.append((*prefix, i))
            out.extend(_paths(v, (*prefix, i)))
    return out


def _apply(m, path: tuple, op: str, value) -> None:
    node = m
    for key in path[:-1]:
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            return  # an earlier mutation removed this path
    last = path[-1]
    try:
        node[last]
    except (KeyError, IndexError, TypeError):
        return
    if op == "delete":
        del node[last]
    elif op == "nest":
        node[last] = [[{"x": node[last]}]]
    else:
        node[last] = value


_OPS = st.tuples(st.integers(0, 10**6), st.sampled_from(["delete", "replace", "number", "nest"]), _JSON, _NUMBERS)


def _mutate_manifest(root: Path, ops) -> None:
    m = json.loads((root / "manifest.json").read_text())
    for pick, op, value, number in ops:
        paths = _paths(m)
        if not paths:
            break
        _apply(m, paths[pick % len(paths)], op, number if op == "number" else value)
    (root / "manifest.json").write_text(json.dumps(m))


def _rehash(root: Path) -> None:
    """Record every listed file's current size and sha256 (so the loader goes past the checksums)."""
    try:
        m = json.loads((root / "manifest.json").read_text())
        for rel in list(m["files"]):
            p = root / rel
            if p.is_file():
                data = p.read_bytes()
                m["files"][rel] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    except (ValueError, KeyError, TypeError, AttributeError, OSError):
        return  # the manifest itself is broken: nothing to re-hash
    (root / "manifest.json").write_text(json.dumps(m))


def _to_tar(root: Path, out: Path, dot_names: bool) -> Path:
    with tarfile.open(out, "w", format=tarfile.GNU_FORMAT) as tar:
        if dot_names:
            tar.add(root, arcname=".")
        else:
            for p in sorted(root.rglob("*")):
                tar.add(p, arcname=p.relative_to(root).as_posix(), recursive=False)
    return out


def _verdict(path: Path) -> None:
    out = succeeds_or_huma_error(lambda: open_bundle(path))
    event(f"{'tar' if path.is_file() else 'folder'}: {'loaded' if isinstance(out, Bundle) else type(out).__name__}")
    if isinstance(out, Bundle):
        g = out.gaussians()
        assert g.count == out.manifest["gaussians"]["count"] and out.arrays["region"].dtype == np.uint8
        assert all(a.dtype in (np.float32, np.uint8) for a in out.arrays.values())
        for graph in ("encoder", "spatial", "deformer"):
            assert out.model_file(graph, "fp32").is_file()


def _check_both(root: Path, work: Path, as_tar: bool, dot_names: bool) -> None:
    _verdict(root)
    if as_tar:
        _verdict(_to_tar(root, work / "b.tar", dot_names))


@given(ops=st.lists(_OPS, min_size=1, max_size=4), rehash=st.booleans(), sig=_SIG, as_tar=st.booleans(),
       dot=st.booleans())  # fmt: skip
def test_manifest_mutations(signed, ops, rehash, sig, as_tar, dot):
    base, key = signed
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        root = Path(shutil.copytree(base, work / "b", symlinks=True))
        _mutate_manifest(root, ops)
        if rehash:
            _rehash(root)
        _signature(root, key, sig)
        _check_both(root, work, as_tar, dot)


@given(cut=st.integers(0, 20000), flips=st.lists(st.tuples(st.integers(0, 20000), st.integers(1, 255)), max_size=4),
       sig=_SIG, as_tar=st.booleans())  # fmt: skip
def test_manifest_bytes(signed, cut, flips, sig, as_tar):
    base, key = signed
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        root = Path(shutil.copytree(base, work / "b", symlinks=True))
        data = bytearray((root / "manifest.json").read_bytes())
        for pos, x in flips:
            if data:
                data[pos % len(data)] ^= x
        (root / "manifest.json").write_bytes(bytes(data[: max(cut, len(data) // 2) if cut % 3 else len(data)]))
        _signature(root, key, sig)
        _check_both(root, work, as_tar, dot_names=False)


_FILE_OPS = st.tuples(
    st.integers(0, 10**6),
    st.sampled_from(["truncate", "flip", "delete", "append", "extra", "empty", "dir"]),
    st.integers(0, 10**6),
    st.integers(1, 255),
)


@given(ops=st.lists(_FILE_OPS, min_size=1, max_size=3), rehash=st.booleans(), sig=_SIG, as_tar=st.booleans(),
       dot=st.booleans())  # fmt: skip
def test_file_mutations(signed, ops, rehash, sig, as_tar, dot):
    base, key = signed
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        root = Path(shutil.copytree(base, work / "b", symlinks=True))
        for pick, op, pos, x in ops:
            files = sorted(p for p in root.rglob("*") if p.is_file())
            if not files:
                break
            f = files[pick % len(files)]
            data = bytearray(f.read_bytes())
            if op == "truncate":
                f.write_bytes(bytes(data[: pos % (len(data) + 1)]))
            elif op == "flip" and data:
                data[pos % len(data)] ^= x
                f.write_bytes(bytes(data))
            elif op == "delete":
                f.unlink()
            elif op == "append":
                f.write_bytes(bytes(data) + bytes([x]) * (pos % 64 + 1))
            elif op == "extra":
                folder = [root, root / "models", root / "splats"][pos % 3]
                (folder / f"extra{x}.bin").write_bytes(bytes([x]) * 8)
            elif op == "empty":
                f.write_bytes(b"")
            elif op == "dir":
                (f.parent / f"sub{x}").mkdir(exist_ok=True)
        if rehash:
            _rehash(root)
        if (root / "manifest.json").is_file():
            _signature(root, key, sig)
        _check_both(root, work, as_tar, dot)


@given(cut=st.integers(0, 10**7), flips=st.lists(st.tuples(st.integers(0, 10**7), st.integers(1, 255)), max_size=3),
       header_only=st.booleans(), dot=st.booleans())  # fmt: skip
def test_archive_bytes(base, cut, flips, header_only, dot):
    """The tar itself damaged: truncated anywhere, bytes flipped (headers included)."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        tar = _to_tar(base, work / "b.tar", dot)
        data = bytearray(tar.read_bytes())
        for pos, x in flips:
            # header_only: flip inside the first 512-byte header blocks, where tarfile's parser reads
            i = (pos % 2048) if header_only else pos % len(data)
            data[i] ^= x
        tar.write_bytes(bytes(data[: cut % (len(data) + 1)]) if cut % 2 else bytes(data))
        _verdict(tar)
