"""The CLI: `huma-rt info` on a CPU machine, and HumaError -> 'error: ...' with exit 1."""

from __future__ import annotations

import json
import subprocess
import sys
import types

import pytest

from huma_rt import cli
from huma_rt.errors import InputError


def test_info_json_reports_cpu_machine():
    proc = subprocess.run(
        [sys.executable, "-m", "huma_rt", "info", "--json"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["python"] == sys.version.split()[0]
    assert "CPUExecutionProvider" in info["onnxruntime_providers"]
    assert info["cuda_devices"] == 0  # no GPU on our machines
    assert "release" in (info["nvcc"] or "release")  # nvcc reported when present
    for key in ("cupy", "tensorrt", "sherpa_onnx", "tritonclient"):
        assert key in info


def test_info_table_exit_zero():
    assert cli.main(["info"]) == 0


def test_no_command_prints_help(capsys):
    assert cli.main([]) == 0
    assert "COMMAND" in capsys.readouterr().out


def test_human_error_is_one_line_without_traceback(monkeypatch, capsys):
    # A command module of our own making that fails with a HumaError, registered for this test.
    failing = types.ModuleType("huma_rt_test_failing")
    failing.add_arguments = lambda parser: parser.add_argument("--rate", type=int, default=44100)

    def run(args):
        raise InputError(f"sample_rate must be 16000; got {args.rate}")

    failing.run = run
    monkeypatch.setitem(sys.modules, "huma_rt_test_failing", failing)
    monkeypatch.setitem(cli.COMMANDS, "failing", ("huma_rt_test_failing", "fails"))
    assert cli.main(["failing", "--rate", "8000"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == "error: sample_rate must be 16000; got 8000"


def test_unknown_command_exits_with_usage():
    with pytest.raises(SystemExit) as exc:
        cli.main(["no-such-command"])
    assert exc.value.code == 2


@pytest.mark.parametrize(("command", "dest"), [("render", "audio"), ("demo", "audio"), ("chat", "wav")])
def test_audio_and_wav_are_one_flag(command, dest):
    """--audio is the name for any audio file; --wav, the old name, still works (issue 16)."""
    import argparse
    import importlib

    module = importlib.import_module(cli.COMMANDS[command][0])
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    extra = ["--bundle", "b", "-o", "o.mp4"] if command == "render" else []
    a = parser.parse_args([*extra, "--audio", "x.mp3"])
    b = parser.parse_args([*extra, "--wav", "x.mp3"])
    assert str(getattr(a, dest)) == str(getattr(b, dest)) == "x.mp3"
