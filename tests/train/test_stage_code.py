"""Stage code fingerprints: a stage's fingerprint follows the source it runs, and only that."""

import shutil

import pytest
from huma_rt.train import stage_code as sc


@pytest.fixture
def train_copy(tmp_path, monkeypatch):
    """A private copy of the train package's sources that stage_code reads instead."""
    dst = tmp_path / "train"
    shutil.copytree(sc._TRAIN_DIR, dst, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(sc, "_TRAIN_DIR", dst)
    return dst


def test_imports_are_followed_transitively_including_lazy_absolute_ones():
    static = sc.train_imports("fit_static")
    # fit_static -> raster_autograd (relative) -> raster_cpu (lazy, absolute import inside a function)
    assert {"fit_static", "raster_autograd", "raster_cpu", "densify"} <= static
    assert "tracking" not in static and "pack_avatar" not in static


def test_every_stage_has_a_distinct_fingerprint():
    codes = {s: sc.stage_code(s) for s in sc.STAGE_MODULES}
    assert len(set(codes.values())) == len(codes)
    assert all(len(c) == 16 for c in codes.values())
    with pytest.raises(KeyError, match="unknown training stage 'fit'"):
        sc.stage_code("fit")


def test_an_edit_changes_the_stages_that_run_it_and_no_other(train_copy):
    before = {s: sc.stage_code(s) for s in sc.STAGE_MODULES}
    with open(train_copy / "raster_cpu.py", "a", encoding="utf-8") as f:
        f.write("\n# an edit\n")
    after = {s: sc.stage_code(s) for s in sc.STAGE_MODULES}
    changed = {s for s in before if before[s] != after[s]}
    assert changed == {s for s in sc.STAGE_MODULES
                       if any("raster_cpu" in sc.train_imports(m) for m in sc.STAGE_MODULES[s])}  # fmt: skip
    # pack runs the rasterizer too: prune_hidden weighs the Gaussians through its backward pass
    assert {"static", "articulated", "pack"} <= changed and "track" not in changed and "codes" not in changed


def test_the_version_is_part_of_every_fingerprint(monkeypatch):
    before = sc.stage_code("pack")
    monkeypatch.setattr(sc.huma_rt, "__version__", "99.0.0")
    assert sc.stage_code("pack") != before
