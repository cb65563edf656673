"""Issue 16's bundle findings, one test each: every bad manifest or file layout is a FormatError
naming the field, raised before any large allocation; nothing escapes the bundle unhashed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from _edit import replace_file, rewrite_manifest, tar_dot

from huma_rt.bundle import open_bundle, pack
from huma_rt.bundle.manifest import MAX_MANIFEST_BYTES
from huma_rt.bundle.schema import schema
from huma_rt.errors import FormatError


def _keys(path: str | tuple) -> list:
    return list(path) if isinstance(path, tuple) else path.split(".")


def _set(path: str | tuple, value):
    """An edit setting manifest field ``path`` ("a.b.c", or a tuple of keys) to ``value``."""

    def edit(m):
        *parents, last = _keys(path)
        for p in parents:
            m = m[p]
        m[last] = value

    return edit


def _delete(path: str | tuple):
    def edit(m):
        *parents, last = _keys(path)
        for p in parents:
            m = m[p]
        del m[last]

    return edit


def _both(key: str, value):
    """Set a timing field both at the top level and in the encoder config (so they agree)."""

    def edit(m):
        m[key] = value
        (m["encoder"]["mel"] if key == "sample_rate" else m["encoder"])[key] = value

    return edit


# -- missing keys, wrong types, out-of-range values ----------------------------------------------

@pytest.mark.parametrize(
    ("edit", "match"),
    [
        # old: KeyError (the background check reads camera.width)
        (_delete("camera.width"), r"\$\.camera lacks the required key\(s\) \['width'\]"),
        # old: loaded with the default hop (the manifest's own value silently replaced)
        (_delete("encoder.mel.hop"), r"\$\.encoder\.mel lacks the required key\(s\) \['hop'\]"),
        # old: loaded with the default width 48 (the exported deformer's is 16)
        (_delete("deformer.hidden"), r"\$\.deformer lacks the required key\(s\) \['hidden'\]"),
    ],
)
def test_missing_keys(bundle_dir, edit, match):
    rewrite_manifest(bundle_dir, edit)
    with pytest.raises(FormatError, match=match):
        open_bundle(bundle_dir)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (_set("camera", []), r"\$\.camera must be of type object; got a list"),  # old: TypeError
        (_set("background", "red"), r"\$\.background must be of type object"),  # old: AttributeError
        (_set("gaussians.sh_degree", "0"), r"\$\.gaussians\.sh_degree must be of type integer"),  # old: TypeError
        (_set("encoder.past_frames", 2.0), r"\$\.encoder\.past_frames must be of type integer; got 2\.0"),  # old: loaded
        (_set(("files", "splats/means.f32", "bytes"), True), r"bytes must be of type integer; got True"),  # old: loaded
    ],
)
def test_wrong_types(bundle_dir, edit, match):
    rewrite_manifest(bundle_dir, edit)
    with pytest.raises(FormatError, match=match):
        open_bundle(bundle_dir)


def test_fps_zero(bundle_dir):
    rewrite_manifest(bundle_dir, _both("fps", 0))  # old: ZeroDivisionError in EncoderConfig
    with pytest.raises(FormatError, match=r"\$\.fps must be >= 1; got 0"):
        open_bundle(bundle_dir)


def test_hop_zero(bundle_dir):
    rewrite_manifest(bundle_dir, _set("encoder.mel.hop", 0))  # old: ZeroDivisionError in EncoderConfig
    with pytest.raises(FormatError, match=r"\$\.encoder\.mel\.hop must be >= 1; got 0"):
        open_bundle(bundle_dir)


def _refused_fast(bundle_dir, match) -> tuple[float, int]:
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(FormatError, match=match):
            open_bundle(bundle_dir)
        elapsed = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20, f"refusing the manifest allocated {peak >> 20} MiB"
    return elapsed, peak


def test_huge_layer_width_refused_without_allocating(bundle_dir):
    # old: open_bundle accepted it; Avatar.load then asked for [Nd, 10^9] float32 (MemoryError)
    rewrite_manifest(bundle_dir, _set("deformer.hidden", 10**9))
    _refused_fast(bundle_dir, r"\$\.deformer\.hidden must be <= 4096; got 1000000000")


def test_huge_past_frames_refused_without_allocating(bundle_dir):
    # old: accepted; a session then spent ~30 s and 4 GB on the feature ring before failing
    rewrite_manifest(bundle_dir, _both("past_frames", 10**7))
    _refused_fast(bundle_dir, r"\$\.past_frames must be <= 250; got 10000000")


def test_feature_buffer_cap(bundle_dir):
    """Fields within their own ranges whose product would still be a huge preload buffer."""
    from huma_rt.bundle.manifest import parse_manifest

    m = json.loads((bundle_dir / "manifest.json").read_text())
    n = 1 << 24
    m["gaussians"].update(count=n, dynamic_count=n, regions={"1": n})
    m["deformer"]["hidden"] = 4096
    with pytest.raises(FormatError, match=r"dynamic_count \* deformer hidden = 16777216 \* 4096 floats exceeds"):
        parse_manifest(json.dumps(m), str(bundle_dir))


@pytest.mark.parametrize(("depth", "match"), [(1500, "nests too deeply"), (100_000, "too large a JSON document")])
def test_deeply_nested_manifest(bundle_dir, depth, match):
    text = (bundle_dir / "manifest.json").read_text()
    deep = "[" * depth + "]" * depth  # old: RecursionError from json
    (bundle_dir / "manifest.json").write_text(text.replace('"name": "tiny-test-avatar"', f'"name": {deep}'))
    with pytest.raises(FormatError, match=match):
        open_bundle(bundle_dir)


def test_nesting_past_the_depth_limit(bundle_dir):
    rewrite_manifest(bundle_dir, _set("name", json.loads("[" * 9 + "]" * 9)))
    with pytest.raises(FormatError, match=r"nests too deeply at \$\.name\[0\]\[0\]\[0\]\[0\]\[0\]\[0\]\[0\] \(limit 8"):
        open_bundle(bundle_dir)


@pytest.mark.parametrize("edit", [_set("engines", [{}] * 5000), _set("precisions", ["fp16"] * 20000),
                                  _set("name", {str(i): 0 for i in range(17000)})])  # fmt: skip
def test_huge_containers_refused_before_parsing(bundle_dir, edit):
    rewrite_manifest(bundle_dir, edit)
    t0 = time.perf_counter()
    with pytest.raises(FormatError, match="too large a JSON document"):
        open_bundle(bundle_dir)
    assert time.perf_counter() - t0 < 5.0  # generous: the check is a byte count (~1 ms)


def test_moderately_nested_value_is_a_type_error_not_a_crash(bundle_dir):
    rewrite_manifest(bundle_dir, _set("fps", json.loads("[" * 6 + "]" * 6)))
    with pytest.raises(FormatError, match=r"\$\.fps must be of type integer; got a list of 1 item"):
        open_bundle(bundle_dir)


def test_oversized_manifest_refused_before_reading(bundle_dir):
    text = (bundle_dir / "manifest.json").read_text()
    (bundle_dir / "manifest.json").write_text(text[:-2] + ', "pad": "' + "x" * MAX_MANIFEST_BYTES + '"}\n')
    with pytest.raises(FormatError, match=f"at most {MAX_MANIFEST_BYTES} are allowed"):
        open_bundle(bundle_dir)


@pytest.mark.parametrize("text", ["NaN", "Infinity", "1e999"])
def test_non_finite_numbers(bundle_dir, text):
    raw = (bundle_dir / "manifest.json").read_text()
    (bundle_dir / "manifest.json").write_text(raw.replace('"fx": 50.0', f'"fx": {text}'))
    with pytest.raises(FormatError, match="not strict JSON|overflows"):
        open_bundle(bundle_dir)


def test_cross_field_rules(bundle_dir):
    rewrite_manifest(bundle_dir, _set("samples_per_frame", 641))
    with pytest.raises(FormatError, match="fps \\* samples_per_frame must equal sample_rate"):
        open_bundle(bundle_dir)


def test_top_level_timing_must_match_the_encoder(bundle_dir):
    rewrite_manifest(bundle_dir, _set("lookahead_frames", 1))
    with pytest.raises(FormatError, match=r"\$\.lookahead_frames is 1, but the encoder config gives 2"):
        open_bundle(bundle_dir)


# -- dtypes and shapes from a fixed list ---------------------------------------------------------

def test_object_dtype_refused(bundle_dir):
    """old: '|O' with a matching size and hash memory-mapped raw bytes as Python object pointers."""
    h, w = 40, 48
    replace_file(bundle_dir, "splats/background.f32", bytes(h * w * 3 * 8))
    rewrite_manifest(bundle_dir, _set("background.dtype", "|O"))
    with pytest.raises(FormatError, match=r'\$\.background\.dtype must be "<f4"; got \'\|O\''):
        open_bundle(bundle_dir)


def test_schema_pins_the_same_files_and_dtypes_as_the_code():
    from huma_rt.bundle.manifest import BACKGROUND_DTYPE, BACKGROUND_FILE, SPLAT_ARRAYS

    props = schema()["$defs"]["arrays"]["properties"]
    assert set(props) == set(SPLAT_ARRAYS)
    for name, (file, dtype) in SPLAT_ARRAYS.items():
        assert (props[name]["properties"]["file"]["const"], props[name]["properties"]["dtype"]["const"]) == (file, dtype)
    image = schema()["$defs"]["background"]["allOf"][1]["then"]["properties"]
    assert (image["file"]["const"], image["dtype"]["const"]) == (BACKGROUND_FILE, BACKGROUND_DTYPE)


def test_schema_is_valid_and_shipped():
    from jsonschema import Draft202012Validator

    Draft202012Validator.check_schema(schema())
    assert (Path(__import__("huma_rt.bundle").bundle.__file__).parent / "manifest.schema.json").is_file()


# -- archives --------------------------------------------------------------------------------------

def test_tar_of_the_folder_with_dot_names(bundle_dir, tmp_path):
    """old: `tar -cf b.tar -C bundle .` was refused with an IndexError (member ".")."""
    b = open_bundle(tar_dot(bundle_dir, tmp_path / "dot.tar"))
    assert b.archive and b.arrays["means"].shape == (1500, 3)
    names = tarfile.open(tmp_path / "dot.tar").getnames()
    assert names[0] == "." and "./manifest.json" in names


@pytest.mark.skipif(shutil.which("tar") is None, reason="no tar command")
def test_tar_command_output_loads(bundle_dir, tmp_path):
    out = tmp_path / "b.tar"
    subprocess.run(["tar", "-cf", str(out), "-C", str(bundle_dir), "."], check=True)
    assert open_bundle(out).model_file("encoder", "fp32").is_file()


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.95])
def test_truncated_tar(export_dir, tmp_path, keep):
    full = pack(_source(export_dir), tmp_path / "b.tar", archive=True).read_bytes()
    cut = tmp_path / "cut.tar"
    cut.write_bytes(full[: int(len(full) * keep)])  # old: tarfile.ReadError, or a memmap past the end
    with pytest.raises(FormatError, match="truncated|missing|corrupt"):
        open_bundle(cut)


def test_tar_member_past_the_end_is_refused_before_reading(bundle_dir, tmp_path):
    out = tar_dot(bundle_dir, tmp_path / "b.tar")
    data = out.read_bytes()
    out.write_bytes(data[: len(data) - 10 * 1024 - 512])  # drop the end-of-archive blocks and some data
    with pytest.raises(FormatError, match="truncated"):
        open_bundle(out)


def _source(export_dir):
    from _runtime_avatar import small_source

    return small_source(export_dir)


# -- integrity: everything the runtime opens is listed, hashed and inside the bundle -----------------

def test_model_path_not_in_the_file_list(bundle_dir):
    """old: a model path missing from `files` loaded without any hash check."""
    shutil.copyfile(bundle_dir / "models/encoder.fp32.onnx", bundle_dir / "models/evil.onnx")
    rewrite_manifest(bundle_dir, _set("models.encoder.fp32", "models/evil.onnx"))
    with pytest.raises(FormatError, match=r'\$\.models\.encoder\.fp32 must be "models/encoder\.fp32\.onnx"'):
        open_bundle(bundle_dir)


def test_hash_entry_removed_and_file_replaced(bundle_dir):
    """old: deleting a file's entry from `files` and replacing the file loaded the new file."""
    rewrite_manifest(bundle_dir, _delete(("files", "models/encoder.fp32.onnx")))
    (bundle_dir / "models/encoder.fp32.onnx").write_bytes(b"attacker's graph")
    with pytest.raises(FormatError, match=r"models/encoder\.fp32\.onnx is not listed in \$\.files"):
        open_bundle(bundle_dir)


def test_unlisted_plan_beside_the_onnx(bundle_dir):
    """The backend opens `<graph>.plan` beside its ONNX by name: an unlisted one must not load."""
    (bundle_dir / "models/encoder.fp16.plan").write_bytes(b"TEST DOUBLE: unlisted plan")
    with pytest.raises(FormatError, match=r"does not list: \['models/encoder\.fp16\.plan'\]"):
        open_bundle(bundle_dir)


def test_listed_plan_needs_an_engines_entry_and_sidecar(bundle_dir):
    replace_file(bundle_dir, "models/encoder.fp16.plan", b"TEST DOUBLE: plan without target")
    with pytest.raises(FormatError, match=r"encoder\.fp16\.plan is listed in \$\.files but has no \$\.engines entry"):
        open_bundle(bundle_dir)
    entry = {"file": "models/encoder.fp16.plan", "onnx": "models/encoder.fp16.onnx", "trt_version": "10.9.0",
             "compute_capability": "9.0", "gpu_name": "x", "precision": "fp16"}  # fmt: skip
    rewrite_manifest(bundle_dir, _set("engines", [entry]))
    with pytest.raises(FormatError, match=r"needs models/encoder\.fp16\.plan\.json listed"):
        open_bundle(bundle_dir)


@pytest.mark.parametrize("name", ["manifest.json", "models", "splats"])
def test_symlink_to_outside_the_bundle(bundle_dir, tmp_path, name):
    """old: manifest.json, models/ or splats/ as links to another place loaded from there."""
    outside = tmp_path / "outside" / name
    outside.parent.mkdir()
    shutil.move(bundle_dir / name, outside)
    (bundle_dir / name).symlink_to(outside)
    with pytest.raises(FormatError, match=f"{name} is a symbolic link"):
        open_bundle(bundle_dir)


def test_bundle_folder_reached_through_a_link_loads(bundle_dir, tmp_path):
    link = tmp_path / "via-link"
    link.symlink_to(bundle_dir)
    assert open_bundle(link).arrays["region"].shape == (1500,)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_special_file_refused(bundle_dir):
    (bundle_dir / "manifest.sig").unlink(missing_ok=True)
    os.mkfifo(bundle_dir / "manifest.sig")  # reading it would block forever
    with pytest.raises(FormatError, match="manifest.sig is not a regular file"):
        open_bundle(bundle_dir)


def test_tar_with_unlisted_member_or_link_still_refused(bundle_dir, tmp_path):
    out = tar_dot(bundle_dir, tmp_path / "b.tar")
    with tarfile.open(out, "a") as tar:
        info = tarfile.TarInfo("./models/encoder.fp16.plan")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info)
    with pytest.raises(FormatError, match="is a link"):
        open_bundle(out)


def test_folder_and_tar_load_the_same_after_hardening(bundle_dir, tmp_path):
    a, b = open_bundle(bundle_dir), open_bundle(tar_dot(bundle_dir, tmp_path / "b.tar"))
    for name, arr in a.arrays.items():
        np.testing.assert_array_equal(arr, b.arrays[name])
    assert a.manifest == b.manifest


@pytest.mark.parametrize(("field", "value", "match"), [
    ("deformer.hidden", 32, r"manifest's deformer\.hidden is 32, but the spatial network's 'feat' has 16"),
    ("encoder.code_dim", 16, r"manifest's encoder\.code_dim is 16, but the encoder network's 'code' has 8"),
])  # fmt: skip
def test_manifest_widths_must_match_the_models_before_allocating(bundle_dir, field, value, match):
    """A manifest whose configs claim other widths than its graphs is refused at preload, naming
    the field, before the feature/code buffers sized by those widths are allocated."""
    from huma_rt.runtime import Avatar

    def edit(m):
        _set(field, value)(m)
        if field == "encoder.code_dim":
            m["deformer"]["code_dim"] = value  # consistent inside the manifest: only the models disagree

    rewrite_manifest(bundle_dir, edit)
    with pytest.raises(FormatError, match=match):
        Avatar.load(bundle_dir, device="cpu", renderer="cpu", threads=1)
