"""The ``huma-rt`` command line: a thin registry of subcommands.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and
``run(args) -> int``; modules are imported only when their command runs, so ``huma-rt info``
works with nothing but numpy installed. A HumaError prints ``error: <message>`` and exits 1.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from huma_rt.errors import HumaError

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "info": ("huma_rt.commands.info", "show versions, devices and optional dependencies"),
    "export": ("huma_rt.export.cli", "export the PyTorch models to ONNX (fp32 + fp16) and check them"),
    "build": ("huma_rt.engines.cli", "build FP16 TensorRT engines from exported ONNX (or --check)"),
    "pack": ("huma_rt.commands.pack", "pack an avatar into a bundle"),
    "keygen": ("huma_rt.commands.keygen", "make an ed25519 key pair for signing bundles (pack --sign)"),
    "render": ("huma_rt.commands.render", "render a WAV file through a bundle into MP4, PNGs or raw RGB"),
    "demo": ("huma_rt.commands.demo", "render the built-in demo avatar speaking text or a WAV"),
    "train": ("huma_rt.train.cli", "make a person's avatar bundle from a talking-head video (extra 'train')"),
    "chat": ("huma_rt.speech.cli", "VAD -> ASR -> responder -> TTS -> avatar, with a latency table"),
    "serve": ("huma_rt.serve.cli", "talk to the avatar in a browser (WebRTC, one worker process per visitor)"),
    "triton-repo": ("huma_rt.triton.cli", "write a Triton Inference Server model repository"),
    "bench": ("huma_rt.bench.cli", "run the benchmark suite"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="huma-rt", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_module, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def _load(name: str):
    module_name = COMMANDS[name][0]
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise HumaError(f"command '{name}' is not available in this installation ({exc})") from exc
        raise HumaError(
            f"command '{name}' needs the Python module '{exc.name}'; install the matching extra "
            "(see 'huma-rt info')"
        ) from exc


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    top, rest = parser.parse_known_args(argv)
    if top.command is None:
        parser.print_help()
        return 0
    level = logging.WARNING - 10 * min(top.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        module = _load(top.command)
        sub = argparse.ArgumentParser(prog=f"huma-rt {top.command}", description=COMMANDS[top.command][1])
        module.add_arguments(sub)
        args = sub.parse_args(rest)
        return int(module.run(args) or 0)
    except HumaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
