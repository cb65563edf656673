"""Write and validate a Triton model repository for a huma-rt avatar.

Models (names are the contract with TritonRunner and the benches):

- ``encoder``    mel [B, T, n_mels] -> code [B, F, code_dim]; batched (max_batch_size 8),
                 dynamic batching with a short queue delay.
- ``spatial``    means [N, 3] -> feat [N, hidden] (once per avatar).
- ``deformer``   feat [N, hidden], code [B, code_dim] -> dmu/dquat/dscale [B, N, k].
- ``deformer_step`` the same network taking code [1, 1, code_dim] (reshaped to [1, code_dim])
                 so it can follow ``encoder`` in the ensemble.
- ``encoder_stream`` python model behind Triton's sequence batcher: per correlation id it keeps
                 the session's mel left context and returns the codes of newly complete frames.
- ``avatar_frame`` ensemble: (mel [1, receptive_mels, n_mels], feat) -> encoder -> deformer_step.
- ``deformer_stream`` the deformer taking code [1, F, code_dim] (reshaped to [F, code_dim]).
- ``avatar_stream`` ensemble over a sequence: (new mel rows, feat) -> encoder_stream ->
                 deformer_stream: the deltas of every frame that became complete, one round trip.

``--target gpu``: ``tensorrt_plan`` where a plan exists, else ``onnxruntime_onnx`` with the
TensorRT accelerator at FP16. ``--target cpu``: python-backend models that run the same ONNX
files through onnxruntime in the environment ``model_env`` (numpy<2 + onnxruntime).
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import logging
import shutil
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from huma_rt._files import sha256_file
from huma_rt._optional import require
from huma_rt.errors import FormatError, InputError
from huma_rt.model_config import DeformerConfig, EncoderConfig

from . import config as cfgmod
from .config import Tensor

log = logging.getLogger(__name__)

NETWORKS = ("encoder", "spatial", "deformer")
FORMAT_VERSION = "1"
MAX_BATCH = 8
QUEUE_DELAY_US = 200  # gathers concurrent sessions' frames without adding visible latency
SEQUENCE_IDLE_US = 60_000_000  # a silent session's slot is reclaimed after a minute


@dataclass
class RepoOptions:
    """What to write. ``precision`` picks the ONNX variant for the gpu target (fp16 graphs keep
    fp32 IO); the cpu target always serves fp32 for exact parity with local onnxruntime."""

    target: str = "cpu"  # "cpu" | "gpu"
    precision: str = "fp16"  # gpu target: "fp16" | "fp32"
    instances: int = 1
    model_env: Path | None = None  # cpu target: EXECUTION_ENV_PATH for python models
    threads: int = 1  # cpu target: onnxruntime intra-op threads per instance
    plans: dict[str, Path] = field(default_factory=dict)  # network -> TensorRT plan (gpu)

    def __post_init__(self) -> None:
        if self.target not in ("cpu", "gpu"):
            raise InputError(f"target must be 'cpu' or 'gpu', got {self.target!r}")
        if self.precision not in ("fp16", "fp32"):
            raise InputError(f"precision must be 'fp16' or 'fp32', got {self.precision!r}")
        if self.instances < 1 or self.threads < 1:
            raise InputError(f"instances and threads must be >= 1, got {self.instances} and {self.threads}")


@dataclass
class Source:
    """An export folder (+ optional plans) resolved from a bundle or --export-dir."""

    export_dir: Path
    plans: dict[str, Path]
    encoder: EncoderConfig
    deformer: DeformerConfig
    keep: object = None  # a TemporaryDirectory holding files extracted from a tar bundle
    dynamic_means: np.ndarray | None = None  # [Nd, 3] f32: the bundle's deformed Gaussians


def _extract_models(tar_path: Path) -> tuple[Path, tempfile.TemporaryDirectory]:
    """Extract the ``models/`` members of an (uncompressed) tar bundle into a temporary folder."""
    tmp = tempfile.TemporaryDirectory(prefix="huma-triton-bundle-")
    try:
        with tarfile.open(tar_path, "r:") as tar:
            members = [m for m in tar.getmembers() if m.isfile() and m.name.lstrip("./").startswith("models/")]
            for m in members:
                name = Path(m.name.lstrip("./")).name  # flat: no path from the archive reaches the disk
                src = tar.extractfile(m)
                assert src is not None
                (Path(tmp.name) / name).write_bytes(src.read())
    except tarfile.TarError as exc:
        tmp.cleanup()
        raise FormatError(f"{tar_path} is not a readable bundle tar: {exc}") from exc
    return Path(tmp.name), tmp


def resolve_source(bundle: str | Path | None = None, export_dir: str | Path | None = None) -> Source:
    """Find the export folder and TensorRT plans of a bundle or an export folder.

    A bundle (folder or uncompressed tar, huma_rt.bundle) holds the export under ``models/``
    with plans as ``models/<network>.<precision>.plan``; an export folder is what
    ``huma-rt export -o DIR`` wrote (plans, if any, as ``<network>[.<precision>].plan``).
    """
    if (bundle is None) == (export_dir is None):
        raise InputError("give exactly one of --bundle or --export-dir")
    root = Path(bundle if bundle is not None else export_dir)  # type: ignore[arg-type]
    if not root.exists():
        raise InputError(f"{root} does not exist")
    keep = None
    if root.is_file():
        if bundle is None or not tarfile.is_tarfile(root):
            raise InputError(f"{root} is a file; expected a bundle (folder or tar) or an export folder")
        root, keep = _extract_models(root)
        candidates = [root]
    else:
        candidates = [root, root / "models", root / "export"] if bundle is not None else [root]
    exp = next((c for c in candidates if (c / "encoder.json").is_file()), None)
    if exp is None:
        raise FormatError(f"{root} holds no export (encoder.json, deformer.json and the ONNX files); looked in {[str(c) for c in candidates]}")
    for net in NETWORKS:
        if not (exp / f"{net}.fp32.onnx").is_file():
            raise FormatError(f"export folder {exp} lacks {net}.fp32.onnx")
    plans: dict[str, Path] = {}
    for folder in (exp, root / "plans", exp / "plans"):
        for net in NETWORKS:
            for name in (f"{net}.fp16.plan", f"{net}.fp32.plan", f"{net}.plan"):
                if net not in plans and (folder / name).is_file():
                    plans[net] = folder / name
    means = _dynamic_means(Path(bundle)) if bundle is not None else None
    return Source(exp, plans, EncoderConfig.load(exp / "encoder.json"), DeformerConfig.load(exp / "deformer.json"), keep, means)


def _dynamic_means(bundle: Path) -> np.ndarray | None:
    """Means [Nd, 3] of the bundle's dynamic Gaussians (region != 0, as the runtime deforms
    them), or None when ``bundle`` is a bare export without a manifest."""
    if bundle.is_dir() and not (bundle / "manifest.json").is_file():
        return None
    if bundle.is_file():
        with tarfile.open(bundle, "r:") as tar:
            if not any(n.lstrip("./") == "manifest.json" for n in tar.getnames()):
                return None
    from huma_rt.bundle import open_bundle

    g = open_bundle(bundle, verify=False).gaussians()
    rows = np.flatnonzero(np.asarray(g.region) != 0)
    return np.ascontiguousarray(np.asarray(g.means)[rows], np.float32) if rows.size else None


def onnx_io(path: Path) -> tuple[list[Tensor], list[Tensor]]:
    """Inputs and outputs of an ONNX file as Tensors (dynamic dims as -1, batch dim kept)."""
    onnx = require("onnx", "reading ONNX model signatures")
    model = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}

    def conv(values) -> list[Tensor]:
        out = []
        for v in values:
            if v.name in inits:
                continue
            t = v.type.tensor_type
            dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim)
            if t.elem_type not in cfgmod.ONNX_TO_TRITON:
                raise FormatError(f"{path}: tensor {v.name} has ONNX element type {t.elem_type}, which we do not map")
            out.append(Tensor(v.name, cfgmod.ONNX_TO_TRITON[t.elem_type], dims))
        return out

    return conv(model.graph.input), conv(model.graph.output)


def _template(name: str) -> str:
    return importlib.resources.files("huma_rt.triton.templates").joinpath(name).read_text()


def _unbatched(ts: list[Tensor]) -> list[Tensor]:
    return [Tensor(t.name, t.dtype, t.dims[1:], None if t.reshape is None else t.reshape[1:]) for t in ts]


class _Writer:
    def __init__(self, out: Path, source: Source, opts: RepoOptions) -> None:
        self.out, self.src, self.opts, self.m = out, source, opts, cfgmod.pb()
        self.written: list[str] = []

    def _base(self, name: str, max_batch: int):
        c = self.m.ModelConfig(name=name, max_batch_size=max_batch)
        return c

    def _instances(self, c, kind: str, count: int) -> None:
        c.instance_group.add(kind=self.m.ModelInstanceGroup.Kind.Value(kind), count=count)

    def _save(self, c) -> None:
        folder = self.out / c.name
        (folder / "1").mkdir(parents=True, exist_ok=True)
        (folder / "config.pbtxt").write_text(cfgmod.to_text(c))
        self.written.append(c.name)

    def _python(self, c, template: str) -> None:
        c.backend = "python"
        (self.out / c.name / "1").mkdir(parents=True, exist_ok=True)
        (self.out / c.name / "1" / "model.py").write_text(_template(template))
        if self.opts.model_env is not None:
            cfgmod.set_params(c, {"EXECUTION_ENV_PATH": str(Path(self.opts.model_env).resolve())})

    def network(self, name: str, net: str, max_batch: int, reshape_code: int | None = None) -> None:
        """One model serving network ``net`` (encoder/spatial/deformer) under ``name``.

        reshape_code: frames per request (1, or -1 for any) when the deformer's code [F, D]
        arrives as an encoder's output [1, F, D].
        """
        o = self.opts
        fp32 = self.src.export_dir / f"{net}.fp32.onnx"
        ins, outs = onnx_io(fp32)
        if reshape_code is not None:
            d = self.src.encoder.code_dim
            ins = [Tensor(t.name, t.dtype, (1, reshape_code, d), (reshape_code, d)) if t.name == "code" else t for t in ins]
        if max_batch:
            ins, outs = _unbatched(ins), _unbatched(outs)
        c = self._base(name, max_batch)
        cfgmod.add_io(c, ins, outs)
        params = {"huma_rt_format": FORMAT_VERSION, "network": net}
        version_dir = self.out / name / "1"
        version_dir.mkdir(parents=True, exist_ok=True)
        if o.target == "cpu":
            self._python(c, "onnx_model.py")
            shutil.copy2(fp32, version_dir / fp32.name)
            params.update(onnx_file=fp32.name, threads=str(o.threads), source_sha256=sha256_file(fp32))
            self._instances(c, "KIND_CPU", o.instances)
        elif net in o.plans or net in self.src.plans:
            plan = o.plans.get(net) or self.src.plans[net]
            c.platform = "tensorrt_plan"
            shutil.copy2(plan, version_dir / "model.plan")
            params.update(source_sha256=sha256_file(fp32), plan_sha256=sha256_file(plan))
            self._instances(c, "KIND_GPU", o.instances)
        else:
            onnx_path = self.src.export_dir / f"{net}.{o.precision}.onnx"
            if not onnx_path.is_file():
                raise FormatError(f"{onnx_path} is missing; export it or use --precision fp32")
            c.platform = "onnxruntime_onnx"
            shutil.copy2(onnx_path, version_dir / "model.onnx")
            params.update(source_sha256=sha256_file(fp32), onnx_sha256=sha256_file(onnx_path))
            acc = c.optimization.execution_accelerators.gpu_execution_accelerator.add(name="tensorrt")
            acc.parameters["precision_mode"] = "FP16"
            acc.parameters["max_workspace_size_bytes"] = str(1 << 30)
            self._instances(c, "KIND_GPU", o.instances)
        if max_batch:
            c.dynamic_batching.max_queue_delay_microseconds = QUEUE_DELAY_US
        cfgmod.set_params(c, params)
        self._save(c)

    def encoder_stream(self) -> None:
        e = self.src.encoder
        c = self._base("encoder_stream", MAX_BATCH)
        cfgmod.add_io(c, [Tensor("mel", "TYPE_FP32", (-1, e.mel.n_mels))], [Tensor("code", "TYPE_FP32", (-1, e.code_dim))])
        self._python(c, "encoder_stream.py")
        sb = c.sequence_batching
        sb.max_sequence_idle_microseconds = SEQUENCE_IDLE_US
        sb.oldest.max_candidate_sequences = 256
        sb.oldest.max_queue_delay_microseconds = 0
        K = self.m.ModelSequenceBatching.Control.Kind
        for name, kind, field_, dtype in (
            ("START", K.Value("CONTROL_SEQUENCE_START"), "int32_false_true", "TYPE_INT32"),
            ("END", K.Value("CONTROL_SEQUENCE_END"), "int32_false_true", "TYPE_INT32"),
            ("CORRID", K.Value("CONTROL_SEQUENCE_CORRID"), None, "TYPE_UINT64"),
        ):
            ctl = sb.control_input.add(name=name).control.add(kind=kind)
            if field_:
                ctl.int32_false_true.extend([0, 1])
            else:
                ctl.data_type = self.m.DataType.Value(dtype)
        self._instances(c, "KIND_CPU", 1)
        cfgmod.set_params(c, {
            "huma_rt_format": FORMAT_VERSION, "encoder_model": "encoder",
            "receptive_mels": str(e.receptive_mels), "mels_per_frame": str(e.mels_per_frame),
            "n_mels": str(e.mel.n_mels), "code_dim": str(e.code_dim),
        })  # fmt: skip
        self._save(c)

    def avatar_deformer(self) -> None:
        """``avatar_deformer``: the deformer with this avatar's features baked in as a constant,
        so a request is just code [D] and Triton batches concurrent sessions' frames."""
        means = self.src.dynamic_means
        if means is None:
            return
        onnx = require("onnx", "baking avatar features into the deformer")
        ort = require("onnxruntime", "computing the avatar's features")
        from onnx import numpy_helper

        spatial = ort.InferenceSession(str(self.src.export_dir / "spatial.fp32.onnx"), providers=["CPUExecutionProvider"])
        feat = spatial.run(["feat"], {"means": means})[0].astype(np.float32)
        o = self.opts
        variant = "fp32" if o.target == "cpu" else o.precision
        model = onnx.load(str(self.src.export_dir / f"deformer.{variant}.onnx"))
        graph_in = next(i for i in model.graph.input if i.name == "feat")
        model.graph.input.remove(graph_in)
        model.graph.initializer.append(numpy_helper.from_array(feat, "feat"))
        version_dir = self.out / "avatar_deformer" / "1"
        version_dir.mkdir(parents=True, exist_ok=True)
        fname = "avatar_deformer.onnx" if o.target == "cpu" else "model.onnx"
        onnx.save(model, str(version_dir / fname))
        n, d = feat.shape[0], self.src.encoder.code_dim
        c = self._base("avatar_deformer", MAX_BATCH)
        cfgmod.add_io(c, [Tensor("code", "TYPE_FP32", (d,))],
                      [Tensor("dmu", "TYPE_FP32", (n, 3)), Tensor("dquat", "TYPE_FP32", (n, 4)), Tensor("dscale", "TYPE_FP32", (n, 3))])  # fmt: skip
        c.dynamic_batching.max_queue_delay_microseconds = QUEUE_DELAY_US
        params = {"huma_rt_format": FORMAT_VERSION, "network": "deformer", "gaussians": str(n),
                  "source_sha256": sha256_file(self.src.export_dir / "deformer.fp32.onnx"),
                  "feat_sha256": hashlib.sha256(feat.tobytes()).hexdigest(),
                  # lets a client accept its own feat when it differs from ours only in the last bits
                  "feat_column_sums": json.dumps([float(x) for x in feat.astype(np.float64).sum(axis=0)])}  # fmt: skip
        if o.target == "cpu":
            self._python(c, "onnx_model.py")
            params.update(onnx_file=fname, threads=str(o.threads))
            self._instances(c, "KIND_CPU", o.instances)
        else:
            c.platform = "onnxruntime_onnx"
            acc = c.optimization.execution_accelerators.gpu_execution_accelerator.add(name="tensorrt")
            acc.parameters["precision_mode"] = "FP16"
            self._instances(c, "KIND_GPU", o.instances)
        cfgmod.set_params(c, params)
        self._save(c)

    def ensemble(self) -> None:
        """``avatar_frame``: one frame's mel window + feat -> that frame's deltas."""
        e = self.src.encoder
        self._encoder_deformer_ensemble(
            "avatar_frame", mel_dims=(1, e.receptive_mels, e.mel.n_mels), frames=1,
            encoder="encoder", deformer="deformer_step", code="frame_code",
        )

    def stream_ensemble(self) -> None:
        """``avatar_stream``: one request per session step, (new mel rows, feat) -> deltas of the
        frames that became complete; sequence id and flags pass to encoder_stream."""
        self._encoder_deformer_ensemble(
            "avatar_stream", mel_dims=(1, -1, self.src.encoder.mel.n_mels), frames=-1,
            encoder="encoder_stream", deformer="deformer_stream", code="new_codes",
        )

    def _encoder_deformer_ensemble(self, name: str, *, mel_dims: tuple, frames: int, encoder: str,
                                   deformer: str, code: str) -> None:
        # mel -> <encoder> -> code -> <deformer> (with feat) -> dmu, dquat, dscale
        c = self._base(name, 0)
        c.platform = "ensemble"
        cfgmod.add_io(
            c,
            [Tensor("mel", "TYPE_FP32", mel_dims), Tensor("feat", "TYPE_FP32", (-1, self.src.deformer.hidden))],
            [Tensor(k, "TYPE_FP32", (frames, -1, n)) for k, n in (("dmu", 3), ("dquat", 4), ("dscale", 3))],
        )
        s1 = c.ensemble_scheduling.step.add(model_name=encoder, model_version=-1)
        s1.input_map["mel"] = "mel"
        s1.output_map["code"] = code
        s2 = c.ensemble_scheduling.step.add(model_name=deformer, model_version=-1)
        s2.input_map["feat"] = "feat"
        s2.input_map["code"] = code
        for k in ("dmu", "dquat", "dscale"):
            s2.output_map[k] = k
        cfgmod.set_params(c, {"huma_rt_format": FORMAT_VERSION})
        self._save(c)


def write_repository(out: str | Path, source: Source, opts: RepoOptions | None = None, *, overwrite: bool = False) -> Path:
    """Write the model repository for ``source`` into ``out`` and validate it; returns ``out``."""
    opts = opts or RepoOptions()
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise InputError(f"{out} exists and is not empty; choose another folder or pass --force")
        if not (out / "huma_rt_repo.json").is_file():
            raise InputError(f"{out} is not a huma-rt model repository (no huma_rt_repo.json); refusing to overwrite it")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    if opts.target == "cpu" and opts.model_env is not None:
        from .server import check_model_env

        check_model_env(opts.model_env)
    w = _Writer(out, source, opts)
    w.network("encoder", "encoder", MAX_BATCH)
    w.network("spatial", "spatial", 0)
    w.network("deformer", "deformer", 0)
    w.network("deformer_step", "deformer", 0, reshape_code=1)
    w.network("deformer_stream", "deformer", 0, reshape_code=-1)
    w.encoder_stream()
    w.ensemble()
    w.stream_ensemble()
    w.avatar_deformer()
    manifest = {
        "format": FORMAT_VERSION, "target": opts.target, "precision": opts.precision if opts.target == "gpu" else "fp32",
        "models": w.written, "export_dir": str(source.export_dir.resolve()),
        "encoder": source.encoder.to_dict(), "deformer": source.deformer.to_dict(),
    }  # fmt: skip
    (out / "huma_rt_repo.json").write_text(json.dumps(manifest, indent=2) + "\n")
    validate_repository(out)
    log.info("wrote Triton repository %s (%s): %s", out, opts.target, ", ".join(w.written))
    return out


def _dims_agree(config_dims: tuple[int, ...], onnx_dims: tuple[int, ...]) -> bool:
    return len(config_dims) == len(onnx_dims) and all(o == -1 or c == o for c, o in zip(config_dims, onnx_dims, strict=True))


def _check_against_onnx(config, onnx_path: Path, where: Path) -> None:
    ins, outs = onnx_io(onnx_path)
    batched = config.max_batch_size > 0
    for kind, declared, actual in (("input", config.input, ins), ("output", config.output, outs)):
        by_name = {t.name: t for t in actual}
        names = [t.name for t in declared]
        if sorted(names) != sorted(by_name):
            raise FormatError(f"{where}: {kind}s {sorted(names)} differ from the ONNX model's {sorted(by_name)} ({onnx_path.name})")
        for t in declared:
            a = by_name[t.name]
            dims = tuple(t.reshape.shape) if kind == "input" and t.HasField("reshape") else tuple(t.dims)
            if batched:
                dims = (-1, *dims)
            if cfgmod.dtype_name(t.data_type) != a.dtype or not _dims_agree(dims, a.dims):
                raise FormatError(
                    f"{where}: {kind} {t.name} is {cfgmod.dtype_name(t.data_type)} {list(dims)} but the ONNX model "
                    f"{onnx_path.name} has {a.dtype} {list(a.dims)}"
                )


def validate_repository(repo: str | Path) -> dict[str, object]:
    """Parse every config.pbtxt with Triton's schema and check it against its ONNX file.

    Checks: each model folder has a parsable config named like the folder and a version folder;
    python models have model.py; IO names/dtypes/dims agree with the ONNX file the model serves;
    ensemble steps name existing models and their tensors. Returns {model name: ModelConfig}.
    """
    repo = Path(repo)
    if not repo.is_dir():
        raise InputError(f"model repository {repo} is not a folder")
    configs = {}
    for folder in sorted(p for p in repo.iterdir() if p.is_dir()):
        c = cfgmod.parse_config(folder / "config.pbtxt")
        configs[c.name] = c
        versions = [p for p in folder.iterdir() if p.is_dir() and p.name.isdigit()]
        if c.platform != "ensemble" and not versions:
            raise FormatError(f"{folder} has no numeric version folder")
        params = {k: v.string_value for k, v in c.parameters.items()}
        if c.backend == "python":
            for v in versions:
                if not (v / "model.py").is_file():
                    raise FormatError(f"{v} lacks model.py for the python backend")
            if "onnx_file" in params:
                for v in versions:
                    _check_against_onnx(c, v / params["onnx_file"], folder / "config.pbtxt")
        elif c.platform == "onnxruntime_onnx":
            for v in versions:
                _check_against_onnx(c, v / "model.onnx", folder / "config.pbtxt")
        elif c.platform == "tensorrt_plan":
            for v in versions:
                if not (v / "model.plan").is_file():
                    raise FormatError(f"{v} lacks model.plan")
    if not configs:
        raise FormatError(f"{repo} holds no models")
    for c in configs.values():
        if c.platform != "ensemble":
            continue
        produced = {i.name for i in c.input}
        for step in c.ensemble_scheduling.step:
            if step.model_name not in configs:
                raise FormatError(f"ensemble {c.name} uses model '{step.model_name}', which is not in {repo}")
            target = configs[step.model_name]
            tin, tout = {i.name for i in target.input}, {o.name for o in target.output}
            for k, v in step.input_map.items():
                if k not in tin:
                    raise FormatError(f"ensemble {c.name}: model {target.name} has no input '{k}' (has {sorted(tin)})")
                if v not in produced:
                    raise FormatError(f"ensemble {c.name}: tensor '{v}' feeds {target.name}.{k} before anything produces it")
            for k, v in step.output_map.items():
                if k not in tout:
                    raise FormatError(f"ensemble {c.name}: model {target.name} has no output '{k}' (has {sorted(tout)})")
                produced.add(v)
        missing = {o.name for o in c.output} - produced
        if missing:
            raise FormatError(f"ensemble {c.name}: outputs {sorted(missing)} are produced by no step")
    return configs
