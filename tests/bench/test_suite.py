"""The suite machinery: run_suite on tiny scenarios, the CLI, device pass-through, peak RSS."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
from huma_rt.bench import cli, suite

from huma_rt.errors import InputError

HERE = Path(__file__).parent


def _load(name: str) -> str:
    """Import tests/bench/<name>.py under a private module name; return that name."""
    module_name = f"_huma_bench_test_{name}"
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, HERE / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[module_name] = module
    return module_name


@pytest.fixture
def tiny(monkeypatch):
    # test-only registry: the real scenarios take minutes; these two exercise the machinery
    monkeypatch.setattr(suite, "SCENARIOS", {
        "tiny": (_load("scenario_tiny"), "a numpy matmul at three sizes"),
        "skipping": (_load("scenario_skipping"), "needs a missing extra"),
        "failing": (_load("scenario_failing"), "has a bug"),
    })


def test_run_suite_writes_summary_and_results(tiny, tmp_path):
    summary = suite.run_suite(["tiny", "skipping"], quick=True, out_dir=tmp_path)
    tiny_s = summary["scenarios"]["tiny"]
    assert tiny_s["status"] == "ok" and tiny_s["device"] == "cpu"
    assert tiny_s["peak_rss_mb"] > 1.0
    skipped = summary["scenarios"]["skipping"]
    assert skipped["status"] == "skipped" and "frobnicator" in skipped["reason"]
    assert "peak_rss_mb" not in skipped
    record = json.loads((tmp_path / "tiny.json").read_text())
    assert [r["gaussians"] for r in record["results"]] == [16000, 32000, 64000]
    assert all(r["p50_ms"] > 0 and r["n"] == 3 for r in record["results"])
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["scenarios"]["skipping"]["status"] == "skipped"
    md = (tmp_path / "summary.md").read_text()
    assert "| tiny | ok | cpu |" in md and "frobnicator" in md and "## tiny" in md


def test_each_scenario_records_its_wall_and_cpu_time_and_the_load(tiny, tmp_path):
    lines = []
    summary = suite.run_suite(["tiny", "skipping"], quick=True, out_dir=tmp_path, progress=lines.append)
    for name in ("tiny", "skipping"):
        s = summary["scenarios"][name]
        assert s["seconds"] >= 0 and s["cpu_seconds"] >= 0 and len(s["load_1min"]) == 2
    assert summary["total_seconds"] >= summary["scenarios"]["tiny"]["seconds"]
    assert summary["cpu_seconds"] >= 0 and summary["startup_seconds"] > 0
    # one line as each scenario starts and one as it ends, the skip with its reason
    assert len(lines) == 4 and lines[0].startswith("[1/2] tiny:") and " ok in " in lines[1]
    assert lines[3].startswith("[2/2] skipping: SKIPPED in ") and "frobnicator" in lines[3]
    md = (tmp_path / "summary.md").read_text()
    assert "cpu_seconds" in md and "start-up before the suite" in md


def test_a_failing_scenario_does_not_lose_the_others(tiny, tmp_path, capsys):
    import argparse

    summary = suite.run_suite(["failing", "tiny"], quick=True, out_dir=tmp_path)
    assert summary["scenarios"]["failing"]["status"] == "failed"
    assert summary["scenarios"]["failing"]["reason"] == "ZeroDivisionError: a bug in the scenario"
    assert summary["scenarios"]["tiny"]["status"] == "ok"
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    assert cli.run(parser.parse_args(["--quick", "-o", str(tmp_path), "--only", "failing", "tiny"])) == 1
    assert "failed: failing: ZeroDivisionError: a bug in the scenario" in capsys.readouterr().out


def test_device_goes_to_scenarios_that_take_it(tiny, tmp_path):
    summary = suite.run_suite(["tiny"], quick=True, out_dir=tmp_path, device="cuda")
    assert summary["device"] == "cuda"
    assert json.loads((tmp_path / "tiny.json").read_text())["device"] == "cuda"
    assert summary["scenarios"]["tiny"]["device"] == "cuda"


def test_bad_names_and_devices_are_input_errors(tiny, tmp_path):
    with pytest.raises(InputError, match="unknown scenario.*'nope'"):
        suite.run_suite(["nope"], quick=True, out_dir=tmp_path)
    with pytest.raises(InputError, match="device must be 'cpu' or 'cuda'; got 'tpu'"):
        suite.run_suite(["tiny"], quick=True, out_dir=tmp_path, device="tpu")


def test_peak_rss_is_reset_per_scenario():
    import numpy as np

    suite.reset_peak_rss()
    before = suite.peak_rss_mb()
    big = np.ones(64 * 2**20 // 8)  # touch 64 MiB
    grown = suite.peak_rss_mb()
    del big
    assert grown - before > 50
    if suite.reset_peak_rss():
        assert suite.peak_rss_mb() < grown - 50


def test_cli_runs_only_and_draws_plots(tiny, tmp_path, capsys):
    # the parser's choices come from the registry at import; build the parser after patching
    import argparse

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(["--quick", "-o", str(tmp_path), "--only", "tiny", "skipping", "--plots"])
    assert cli.run(args) == 0
    out = capsys.readouterr().out
    assert "skipped: skipping: the 'frobnicator' extra is not installed" in out
    assert "[2/2] skipping: SKIPPED in " in out  # the live line as it ran
    assert f"plot: {tmp_path / 'scaling_gaussians.png'}" in out
    assert (tmp_path / "scaling_gaussians.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
