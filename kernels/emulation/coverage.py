"""Line coverage of the CUDA kernels (kernels/*.cu) when the tests run them under the shim.

Runs the given pytest targets in a child process with $HUMA_EMU_COVERAGE=1 and a fresh
$HUMA_EMU_BUILD_DIR (so the emulated kernels are rebuilt with gcov at -O0), then asks gcovr
for the executed fraction of each .cu file's lines. Usage:

    python -m huma_rt.kernels.emulation.coverage [--fail-under PERCENT] [pytest args...]

The default tests include the backward kernels' (test_emulated_backward_equals_cpu); CI runs
it with ``--fail-under 100``: every line of every kernel, forward and backward, executed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TESTS = ["tests/kernels/test_emulated_raster.py", "tests/kernels/test_oracle_raster.py",
                 "-k", "emulated and not large"]


def cu_coverage(build_dir: Path) -> dict:
    """{file: {lines, covered, percent}} for kernels/*.cu from the .gcda files under build_dir."""
    gcovr = Path(sys.executable).with_name("gcovr")
    cmd = [str(gcovr) if gcovr.exists() else "gcovr", "--root", str(ROOT / "kernels"),
           "--filter", r".*\.cu$", "--json-summary", "-", str(build_dir)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    summary = json.loads(proc.stdout)
    return {f["filename"]: {"lines": f["line_total"], "covered": f["line_covered"],
                            "percent": f["line_percent"]} for f in summary["files"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fail-under", type=float, default=0.0,
                    help="exit 1 when a .cu file's executed lines are below this percentage")
    ap.add_argument("pytest_args", nargs="*", default=DEFAULT_TESTS)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="huma-emu-cov-") as build:
        env = {**os.environ, "HUMA_EMU_COVERAGE": "1", "HUMA_EMU_BUILD_DIR": build}
        rc = subprocess.run([sys.executable, "-m", "pytest", "-q", *args.pytest_args], cwd=ROOT,
                            env=env).returncode
        cov = cu_coverage(Path(build))
    for name, c in sorted(cov.items()):
        print(f"{name}: {c['covered']}/{c['lines']} lines executed ({c['percent']:.1f} %)")
    if not cov:
        print("no .cu coverage data (did the tests run the emulated backend?)")
        return 1
    low = [name for name, c in cov.items() if c["percent"] < args.fail_under]
    if low:
        print(f"below {args.fail_under} %: {', '.join(sorted(low))}")
        return rc or 1
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
