"""Registers, shared memory and spills per kernel per architecture, from nvcc ``-Xptxas -v``.

Compiles every ``kernels/*.cu`` once with one ``-gencode`` per architecture (a fatbin; nothing
is run, so no GPU is needed) and parses ptxas' report. ``compile_cu`` is also the nvcc check of
tests/kernels/test_nvcc.py (errors and warnings both fail there).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from huma_rt.bench.common import write_result

NVCC = Path("/usr/local/cuda/bin/nvcc")
ARCHS = ("75", "80", "86", "89", "90")
KERNEL_DIR = Path(__file__).resolve().parents[1] / "kernels"

_ENTRY = re.compile(r"Compiling entry function '(\w+)' for 'sm_(\d+)'")
_SPILL = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(r"Used (\d+) registers(?:.*?(\d+) bytes smem)?")


@dataclass
class NvccResult:
    """One nvcc run: exit status, its stderr+stdout text and the command line."""

    returncode: int
    output: str
    command: list[str]


def kernel_sources() -> list[Path]:
    """Every CUDA translation unit of the rasterizer (kernels/*.cu), sorted."""
    return sorted(KERNEL_DIR.glob("*.cu"))


def compile_cu(source: Path, archs: tuple[str, ...] = ARCHS, *, verbose: bool = True,
               nvcc: Path = NVCC) -> NvccResult:
    """Compile ``source`` for every sm_<arch> in one nvcc call into a throw-away fatbin.

    Warnings are promoted to errors (``-Werror all-warnings``) so a warning fails the build.
    """
    gencode = [f"-gencode=arch=compute_{a},code=sm_{a}" for a in archs]
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [str(nvcc), "-std=c++17", f"-I{KERNEL_DIR}", "-fatbin", *gencode,
               "-Werror", "all-warnings", *(["-Xptxas", "-v"] if verbose else []),
               "-o", str(Path(tmp) / "out.fatbin"), str(source)]
        p = subprocess.run(cmd, capture_output=True, text=True, check=False)
    return NvccResult(p.returncode, p.stderr + p.stdout, cmd)


def parse_ptxas(text: str) -> list[dict]:
    """Rows {kernel, arch, registers, smem_bytes, stack_bytes, spill_stores, spill_loads}."""
    rows: list[dict] = []
    cur: dict | None = None
    for line in text.splitlines():
        m = _ENTRY.search(line)
        if m:
            cur = {"kernel": m.group(1), "arch": f"sm_{m.group(2)}", "registers": None,
                   "smem_bytes": 0, "stack_bytes": 0, "spill_stores": 0, "spill_loads": 0}
            rows.append(cur)
            continue
        if cur is None:
            continue
        m = _SPILL.search(line)
        if m:
            cur["stack_bytes"], cur["spill_stores"], cur["spill_loads"] = map(int, m.groups())
        m = _USED.search(line)
        if m:
            cur["registers"] = int(m.group(1))
            cur["smem_bytes"] = int(m.group(2) or 0)
    return rows


def run(quick: bool, out_dir: Path) -> dict:
    """ptxas usage of every kernel for every architecture (``quick`` changes nothing: it is
    one compile per source)."""
    if not NVCC.exists():
        return write_result(out_dir, "ptxas", [], {"skipped": f"nvcc not found at {NVCC}"})
    rows = []
    for src in kernel_sources():
        res = compile_cu(src)
        if res.returncode != 0:
            raise RuntimeError(f"nvcc failed on {src.name}:\n{res.output}")
        rows += [{"source": src.name, **r} for r in parse_ptxas(res.output)]
    rows.sort(key=lambda r: (r["source"], r["kernel"], r["arch"]))
    return write_result(out_dir, "ptxas", rows, {"archs": [f"sm_{a}" for a in ARCHS]})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("bench/results"))
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    rec = run(args.quick, args.out)
    for r in rec["results"]:
        print(f"{r['kernel']:>22} {r['arch']}: {r['registers']} regs, {r['smem_bytes']} B smem, "
              f"{r['spill_stores']}/{r['spill_loads']} B spill st/ld")


if __name__ == "__main__":
    main()
