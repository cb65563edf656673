"""Build (once) and cache the demo avatar's bundle: shipped weights -> ONNX -> head -> pack.

The cache key is a sha256 over the shipped checkpoint files, the source of the head and
articulation code (the head is built by code, so a code change is a new avatar), the ONNX export
and fp16 conversion code (they decide the graphs' bytes) and the bundle schema version. A finished
bundle lives in ``<cache>/<key>/bundle``; it is built in a temporary folder and renamed into place,
under a file lock, so parallel first runs neither collide nor leave half a bundle behind.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from huma_rt.errors import FormatError

from ..checkpoint import DEMO_CHECKPOINT_DIR, is_checkpoint, load_checkpoint

log = logging.getLogger(__name__)

DEMO_JSON = "demo.json"
# the head's rows some frame shows (train/demo_visibility.py writes it beside the checkpoint)
VISIBLE_NPZ = "visible.npz"
_CODE_FILES = ("head.py", "articulation.py", "bundle.py", "../onnx_export.py", "../fp16.py")


def default_cache_dir() -> Path:
    """$HUMA_RT_CACHE/demo, else $XDG_CACHE_HOME/huma-rt/demo, else ~/.cache/huma-rt/demo."""
    root = os.environ.get("HUMA_RT_CACHE")
    if root:
        return Path(root) / "demo"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "huma-rt" / "demo"


def bundle_key(checkpoint: Path = DEMO_CHECKPOINT_DIR) -> str:
    """sha256 (first 16 hex digits) of the checkpoint files, demo and export code, bundle schema."""
    from huma_rt.bundle import SCHEMA_VERSION

    checkpoint = Path(checkpoint)
    if not is_checkpoint(checkpoint) or not (checkpoint / DEMO_JSON).is_file():
        raise FormatError(
            f"no trained demo checkpoint in {checkpoint} (expected model.safetensors, encoder.json, "
            f"deformer.json, {DEMO_JSON}); train one with: python -m huma_rt.export.demo.train"
        )
    h = hashlib.sha256()
    for name in ("model.safetensors", "encoder.json", "deformer.json", DEMO_JSON):
        h.update(name.encode())
        h.update((checkpoint / name).read_bytes())
    here = Path(__file__).parent
    for name in _CODE_FILES:
        h.update(name.encode())
        h.update((here / name).read_bytes())
    if (checkpoint / VISIBLE_NPZ).is_file():
        h.update(VISIBLE_NPZ.encode())
        h.update((checkpoint / VISIBLE_NPZ).read_bytes())
    h.update(f"bundle schema {SCHEMA_VERSION}".encode())
    return h.hexdigest()[:16]


def build_bundle(out: Path, checkpoint: Path = DEMO_CHECKPOINT_DIR) -> Path:
    """Export the checkpoint to ONNX, build the head and pack them into bundle folder ``out``."""
    from huma_rt.bundle import AvatarSource, pack

    from ..onnx_export import export_models
    from .head import HeadSpec, build_background, build_camera, build_head

    meta = json.loads((Path(checkpoint) / DEMO_JSON).read_text())
    encoder, spatial, deformer, _, _ = load_checkpoint(checkpoint)
    head_spec = HeadSpec(**meta["head"])
    with tempfile.TemporaryDirectory(prefix="huma-demo-export-") as tmp:
        export_dir = Path(tmp) / "export"
        result = export_models(export_dir, encoder, spatial, deformer, source=f"demo checkpoint {checkpoint}",
                               raise_on_failure=False)
        _check_export(result.report.get("failures", []), export_dir)
        head = build_head(head_spec)
        rows = visible_rows(checkpoint, head)
        source = AvatarSource(
            gaussians=head if rows is None else head.subset(rows), camera=build_camera(head_spec.image_size),
            background=build_background(head_spec.image_size), export_dir=export_dir,
            name="huma-demo", blink_code=blink_code(meta), blink_regions=[REGION_LIDS],
        )
        return Path(pack(source, out))


REGION_LIDS = 4  # head.py's region id of the eyelids


def head_digest(head) -> str:
    """sha256 of a head's means and region ids: which head a visibility list was computed for."""
    h = hashlib.sha256()
    for a in (head.means, head.region):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def visible_rows(checkpoint: Path, head) -> np.ndarray | None:
    """The rows of ``head`` [M] int64 that ``visible.npz`` beside the checkpoint keeps, or None
    (every row) when there is no such file or it was computed for another head (logged: rerun
    ``python -m huma_rt.train.demo_visibility``)."""
    path = Path(checkpoint) / VISIBLE_NPZ
    if not path.is_file():
        return None
    with np.load(path) as z:
        count, digest, bits = int(z["count"]), str(z["head_sha256"]), z["keep"]
    if count != head.count or digest != head_digest(head):
        log.warning("%s was computed for another demo head (%d Gaussians; this one has %d): every Gaussian is "
                    "packed; rerun python -m huma_rt.train.demo_visibility", path, count, head.count)  # fmt: skip
        return None
    return np.flatnonzero(np.unpackbits(bits, count=count).astype(bool))


def blink_code(meta: dict) -> np.ndarray:
    """[code_dim] f32: the code of shut eyes, E @ (0, 0, 0, 0, 1) with the checkpoint's embedding
    (the deformer learnt blinks from it; the encoder never emits one)."""
    emb = np.asarray(meta["code_embedding"], np.float32)  # [code_dim, len(params)]
    return np.ascontiguousarray(emb[:, list(meta["params"]).index("blink")])


def _check_export(failures: list[str], export_dir: Path) -> None:
    """Refuse any failed export check except fp16 parity, which only warns: the CPU runtime runs
    the fp32 graphs, and the trained tri-plane's high-frequency features make the fp16 spatial
    graph (run once at preload) miss the 1e-2 parity bar by a little."""
    hard = [f for f in failures if not (".fp16.onnx" in f and "relative error" in f)]
    if hard:
        raise FormatError(f"demo export checks failed ({export_dir}): " + "; ".join(hard))
    for f in failures:
        log.warning("demo export: %s (fp16 graphs only; the CPU runtime uses fp32)", f)


def ensure_bundle(checkpoint: Path = DEMO_CHECKPOINT_DIR, cache_dir: Path | None = None,
                  rebuild: bool = False) -> tuple[Path, bool]:
    """(bundle path, built_now): the cached demo bundle, building it on first use."""
    from filelock import FileLock

    key = bundle_key(checkpoint)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    final = root / key / "bundle"
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / f"{key}.lock")):
        if final.is_dir() and (final / "manifest.json").is_file() and not rebuild:
            log.info("demo bundle cached at %s", final)
            return final, False
        t0 = time.perf_counter()
        stage = Path(tempfile.mkdtemp(prefix="build-", dir=root))
        try:
            built = build_bundle(stage / "bundle", checkpoint)
            if final.exists():
                shutil.rmtree(final)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(built, final)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
        log.info("built demo bundle %s in %.1f s", final, time.perf_counter() - t0)
        return final, True
