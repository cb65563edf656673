"""The Nsight runner: exact commands, and a clear exit 2 where the tool or a GPU is missing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from huma_rt.bench import nsight


def test_print_only_gives_the_documented_commands(tmp_path, capsys):
    assert nsight.main(["nsys", "-o", str(tmp_path), "--frames", "12", "--print-only"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("nsys profile --trace=cuda,nvtx,osrt")
    assert "-m huma_rt.bench.workload --device cuda --frames 12" in out
    assert nsight.main(["ncu", "--print-only"]) == 0
    assert "--nvtx-include huma/" in capsys.readouterr().out


@pytest.mark.parametrize("tool", ["nsys", "ncu"])
def test_missing_tool_exits_2_with_a_clear_message(tool, tmp_path):
    if shutil.which(tool):
        pytest.skip(f"{tool} is installed here")
    env = {**os.environ, "PATH": os.path.dirname(sys.executable)}  # no Nsight on this PATH
    proc = subprocess.run([sys.executable, "-m", "huma_rt.bench.nsight", tool, "-o", str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert f"{tool} is not installed on this machine" in proc.stderr
    assert proc.stdout.startswith(tool)  # the command to run elsewhere is still printed
    assert not any(tmp_path.iterdir())  # nothing profiled, nothing written
