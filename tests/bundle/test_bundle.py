"""Bundle format: pack -> open round trip (folder and tar), and every refusal the loader owes."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
from _runtime_avatar import small_camera, small_gaussians, small_source

from huma_rt.backends.sidecar import Sidecar, sha256_file, sidecar_path
from huma_rt.bundle import SCHEMA_VERSION, open_bundle, pack
from huma_rt.errors import FormatError, InputError
from huma_rt.runtime import Avatar


def _rewrite_manifest(root: Path, edit) -> None:
    m = json.loads((root / "manifest.json").read_text())
    edit(m)
    (root / "manifest.json").write_text(json.dumps(m))


def test_round_trip_folder(bundle_dir):
    b = open_bundle(bundle_dir)
    g0 = small_gaussians()
    for name in ("means", "log_scales", "quats", "opacity_logits", "sh", "region"):
        arr = b.arrays[name]
        assert isinstance(arr, np.memmap) and not arr.flags.writeable
        np.testing.assert_array_equal(arr, getattr(g0, name))
    m = b.manifest
    assert m["schema_version"] == SCHEMA_VERSION and m["fps"] == 25 and m["sample_rate"] == 16000
    assert m["lookahead_samples"] == b.encoder.lookahead_samples == 1400
    assert m["camera"] == small_camera().to_dict()
    assert m["gaussians"]["regions"] == {"0": int((g0.region == 0).sum()), "1": int((g0.region == 1).sum())}
    listed = set(m["files"])
    on_disk = {p.relative_to(bundle_dir).as_posix() for p in bundle_dir.rglob("*") if p.is_file()} - {"manifest.json"}
    assert listed == on_disk
    for rel, rec in m["files"].items():
        assert rec["sha256"] == hashlib.sha256((bundle_dir / rel).read_bytes()).hexdigest()
    assert not any(p.suffix in (".pkl", ".pickle", ".npz", ".pt") for p in bundle_dir.rglob("*"))
    assert b.model_file("encoder", "fp16").is_file() and b.background.shape == (40, 48, 3)


def test_archive_equals_folder(export_dir, bundle_dir, tmp_path):
    tar_path = pack(small_source(export_dir), tmp_path / "b.tar", archive=True)
    assert tarfile.open(tar_path).getnames()[0] == "manifest.json"
    bt, bd = open_bundle(tar_path), open_bundle(bundle_dir)
    assert bt.archive and not bd.archive
    for name, arr in bd.arrays.items():
        np.testing.assert_array_equal(bt.arrays[name], arr)
    audio = np.random.default_rng(0).uniform(-0.3, 0.3, 8000).astype(np.float32)
    fa = [f.rgb.copy() for f in Avatar.load(tar_path, device="cpu", threads=1).render(audio)]
    fb = [f.rgb.copy() for f in Avatar.load(bundle_dir, device="cpu", threads=1).render(audio)]
    assert len(fa) == len(fb) == 13
    for a, b in zip(fa, fb, strict=True):
        np.testing.assert_array_equal(a, b)


def test_pack_progress_and_refusals(export_dir, tmp_path):
    seen = []
    pack(small_source(export_dir), tmp_path / "p", progress=lambda *a: seen.append(a))
    assert {s for s, _, _ in seen} >= {"write splats", "copy models", "hash"} and seen[-1][1] == seen[-1][2]
    with pytest.raises(InputError, match="already exists"):
        pack(small_source(export_dir), tmp_path / "p")
    pack(small_source(export_dir), tmp_path / "p", overwrite=True)
    g = small_gaussians()
    g.region[:] = 0
    with pytest.raises(InputError, match="no dynamic region"):
        pack(small_source(export_dir, gaussians=g), tmp_path / "q")
    with pytest.raises(InputError, match="background image must have shape"):
        pack(small_source(export_dir, background=np.zeros((4, 4, 3), np.float32)), tmp_path / "q")
    broken = tmp_path / "broken_export"
    shutil.copytree(export_dir, broken)
    (broken / "deformer.fp16.onnx").unlink()
    with pytest.raises(InputError, match="deformer.fp16.onnx"):
        pack(small_source(broken), tmp_path / "q")
    assert not (tmp_path / "q").exists() and not list(tmp_path.glob(".huma-pack-*"))


def test_missing_file(bundle_dir):
    (bundle_dir / "models" / "encoder.fp32.onnx").unlink()
    with pytest.raises(FormatError, match=r"missing models/encoder\.fp32\.onnx"):
        open_bundle(bundle_dir)


def test_checksum_mismatch(bundle_dir):
    p = bundle_dir / "models" / "deformer.fp32.onnx"
    data = bytearray(p.read_bytes())
    data[-1] ^= 0xFF
    p.write_bytes(bytes(data))
    with pytest.raises(FormatError, match=r"checksum mismatch for models/deformer\.fp32\.onnx"):
        open_bundle(bundle_dir)


def test_newer_schema_version_asks_for_an_upgrade(bundle_dir):
    _rewrite_manifest(bundle_dir, lambda m: m.update(schema_version=99))
    with pytest.raises(FormatError, match="schema_version 99 is newer.*upgrade huma-rt"):
        open_bundle(bundle_dir)


def test_older_schema_version_asks_for_a_repack(bundle_dir, monkeypatch):
    import huma_rt.bundle.manifest as manifest

    monkeypatch.setattr(manifest, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with pytest.raises(FormatError, match=f"schema_version {SCHEMA_VERSION} is older.*re-pack"):
        open_bundle(bundle_dir)


def test_shapes_that_contradict_the_manifest(bundle_dir):
    _rewrite_manifest(bundle_dir, lambda m: m["arrays"]["means"].update(shape=[7, 3]))
    with pytest.raises(FormatError, match="array means has shape"):
        open_bundle(bundle_dir)


def test_count_that_contradicts_the_file_sizes(bundle_dir):
    def edit(m):
        n = m["gaussians"]["count"] + 1
        m["gaussians"]["count"] = n
        m["gaussians"]["regions"]["0"] += 1
        for a in m["arrays"].values():
            a["shape"][0] = n
    _rewrite_manifest(bundle_dir, edit)
    with pytest.raises(FormatError, match=r"bytes in \$\.files, but shape"):
        open_bundle(bundle_dir)


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_nan_inf_in_splats(bundle_dir, value):
    p = bundle_dir / "splats" / "log_scales.f32"
    arr = np.fromfile(p, "<f4")
    arr[3 * 17 + 1] = value
    arr.tofile(p)
    _rewrite_manifest(bundle_dir, lambda m: m["files"]["splats/log_scales.f32"].update(sha256=sha256_file(p)))
    with pytest.raises(FormatError, match=r"log_scales\.f32 holds NaN or Inf \(Gaussian 17"):
        open_bundle(bundle_dir)


def _tar_with(tmp_path: Path, bundle_dir: Path, extra) -> Path:
    out = tmp_path / "evil.tar"
    with tarfile.open(out, "w") as tar:
        for p in sorted(bundle_dir.rglob("*")):
            if p.is_file():
                tar.add(p, arcname=p.relative_to(bundle_dir).as_posix())
        extra(tar)
    return out


def _file(tar, name: str, data: bytes = b"x") -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (lambda t: _file(t, "../escape.txt"), "escapes the bundle"),
        (lambda t: _file(t, "models/../../escape.txt"), "escapes the bundle"),
        (lambda t: _file(t, "/etc/evil"), "absolute path"),
        (lambda t: t.addfile(_link("splats/evil", "/etc/passwd")), "is a link"),
        (lambda t: _file(t, "splats/unlisted.f32"), "does not list"),
    ],
)
def test_archive_members_that_escape(tmp_path, bundle_dir, extra, match):
    with pytest.raises(FormatError, match=match):
        open_bundle(_tar_with(tmp_path, bundle_dir, extra))


def _link(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info


def test_symlink_in_folder_bundle(bundle_dir, tmp_path):
    target = bundle_dir / "splats" / "region.u8"
    real = tmp_path / "region.u8"
    shutil.move(target, real)
    target.symlink_to(real)
    with pytest.raises(FormatError, match="symbolic link"):
        open_bundle(bundle_dir)


def test_not_a_bundle(tmp_path):
    with pytest.raises(FormatError, match="does not exist"):
        open_bundle(tmp_path / "nope")
    (tmp_path / "x.tar").write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(FormatError, match="not an uncompressed tar"):
        open_bundle(tmp_path / "x.tar")
    with pytest.raises(FormatError, match="no manifest.json"):
        open_bundle(tmp_path)


def test_plans_are_recorded_with_their_target(export_dir, tmp_path):
    """A TensorRT plan cannot be built here: the .plan bytes are a labelled TEST DOUBLE (opaque
    bytes); the sidecar is the real format. Pack records the target; loading on the CPU uses ONNX."""
    plans = tmp_path / "plans"
    plans.mkdir()
    plan = plans / "encoder.fp16.plan"
    plan.write_bytes(b"TEST DOUBLE: not a real TensorRT engine")
    Sidecar(trt_version="10.9.0", gpu_name="NVIDIA H100", compute_capability="9.0", precision="fp16",
            profiles={}, onnx_file="encoder.fp16.onnx", onnx_sha256=sha256_file(export_dir / "encoder.fp16.onnx"),
            plan_sha256=sha256_file(plan), flags={}, build_time_s=0.0, built_at="", cache_key="", trtexec="",
            ).save(sidecar_path(plan))  # fmt: skip
    out = pack(small_source(export_dir, plans_dir=plans), tmp_path / "b")
    b = open_bundle(out)
    assert b.plans() == [{"file": "models/encoder.fp16.plan", "onnx": "models/encoder.fp16.onnx", "trt_version": "10.9.0",
                          "compute_capability": "9.0", "gpu_name": "NVIDIA H100", "precision": "fp16"}]  # fmt: skip
    assert (out / "models" / "encoder.fp16.plan.json").is_file()
    a = Avatar.load(out, device="cpu", threads=1)
    assert "onnxruntime" in a.preload_report.backends["encoder"]
    plan.write_bytes(b"changed after the sidecar was written")
    with pytest.raises(FormatError, match="sidecar says"):
        pack(small_source(export_dir, plans_dir=plans), tmp_path / "c")
