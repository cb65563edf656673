"""The wheel ships export/, engines/, kernels/ (CUDA sources and the built CPU backend) and a
working `huma-rt` entry point; a bare install with numpy alone imports and runs `info`."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy
import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), str(ROOT)],
        check=True, timeout=900,
    )
    wheels = list(out.glob("huma_rt-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_wheel_holds_every_part(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder in ("export", "engines", "kernels", "bench"):
        assert f"huma_rt/{folder}/__init__.py" in names, folder
    source_kernels = sorted(p.name for p in (ROOT / "kernels").glob("*.cu*"))
    assert source_kernels, "kernels/ holds no CUDA sources"
    for name in source_kernels:
        assert f"huma_rt/kernels/{name}" in names, name
    assert any(n.startswith("huma_rt/kernels/") and n.endswith(".so") for n in names), (
        "the native CPU rasterizer was not built into the wheel"
    )
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "huma-rt = huma_rt.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()


def test_bare_install_runs_entry_point(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python*/site-packages"))
    # Install the wheel by unpacking it (no pip, no index), then expose numpy alone.
    zipfile.ZipFile(wheel).extractall(site)
    numpy_dir = tmp_path / "only-numpy"
    numpy_dir.mkdir()
    src = Path(numpy.__file__).parent
    (numpy_dir / "numpy").symlink_to(src)
    if (src.parent / "numpy.libs").exists():
        (numpy_dir / "numpy.libs").symlink_to(src.parent / "numpy.libs")
    (site / "only_numpy.pth").write_text(str(numpy_dir) + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    py = venv / "bin" / "python"
    code = (
        "import sys, huma_rt, huma_rt.kernels; "
        "assert 'onnxruntime' not in sys.modules and 'torch' not in sys.modules; "
        "print(huma_rt.__file__); print(huma_rt.kernels.cpu_backend_available())"
    )
    # cwd outside the repo: `python -c` puts the cwd first on sys.path
    proc = subprocess.run(
        [py, "-c", code], capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert str(site) in proc.stdout.splitlines()[0]
    assert proc.stdout.splitlines()[1] == "True"
    # The console script as pip would write it: the entry point of the wheel.
    proc = subprocess.run(
        [py, "-c", "import sys; from huma_rt.cli import main; sys.exit(main(['info']))"],
        capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "onnxruntime" in proc.stdout and "not installed" in proc.stdout
