"""TritonRunner: the Runner interface (docs/INTERFACES.md) over a Triton Inference Server.

``open_runner(model, backend="triton", url="127.0.0.1:8001", ...)`` lands here. ``model`` is a
model name on the server ("encoder", "deformer", ...) or a local ``<network>.<precision>.onnx``
path: then the network is the file name's first part and the server's model must have been
built from that very file (the repository records its sha256), so a stale server is reported as
a version mismatch instead of silently producing other numbers.

Timeouts (docs/triton.md): ``timeout_s`` bounds opening (readiness, metadata) and the first,
cold request that ``bind()`` sends; after that one ``run()`` may take at most ``budget_s``, all
tries together, each try's deadline being what is left of the budget. A stateless request that
fails fast on the transport (UNAVAILABLE, connection refused or reset) is retried with a short
backoff while the budget lasts; a deadline is never retried (a server that did not answer in
time will not answer the next try either, and the retry would only triple the stall). Sequence
requests (``EncoderStream``) are never retried: a repeated chunk would be appended twice to the
session's context on the server.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import numpy as np

from huma_rt._files import sha256_file
from huma_rt._optional import require
from huma_rt.backends.base import Runner, TensorSpec
from huma_rt.errors import BackendError, HumaError, InputError

log = logging.getLogger(__name__)

PROTOCOLS = ("grpc", "http")
DEFAULT_PORTS = {"grpc": 8001, "http": 8000}
_TRITON_TO_NP = {"FP32": np.float32, "FP16": np.float16, "INT32": np.int32, "INT64": np.int64, "UINT64": np.uint64, "BOOL": np.bool_}
# 25 fps is 40 ms a frame and loopback requests take 1-80 ms on a loaded 2-core host (bench):
# a run that has not answered in 1 s is a frozen or overloaded server, not a slow frame, and
# a live stream is better told so than stalled for longer. Cold costs (readiness, the first
# request after a model load, a TensorRT accelerator building its engine) are paid at open
# and bind, under timeout_s.
DEFAULT_BUDGET_S = 1.0
DEFAULT_TIMEOUT_S = 10.0
_BACKOFF_S = 0.05  # first retry's delay, doubled each retry
# gRPC status codes and transport messages of a request that failed fast and may succeed on
# another try (the server restarting, a connection reset); everything else is final.
_DEADLINE_STATUS = ("DEADLINE_EXCEEDED",)
_TRANSPORT_STATUS = ("UNAVAILABLE",)
_TRANSPORT_TEXT = ("connection refused", "connection reset", "reset by peer", "broken pipe", "failed to connect", "socket closed")
_seq_ids = itertools.count(int.from_bytes(os.urandom(4), "little") << 20)
_seq_lock = threading.Lock()


def _module(protocol: str):
    if protocol not in PROTOCOLS:
        raise InputError(f"protocol must be one of {list(PROTOCOLS)}; got {protocol!r}")
    return require(f"tritonclient.{protocol}", f"the Triton {protocol} client")


def _exception_type():
    return require("tritonclient.utils", "the Triton client").InferenceServerException


def _normalise_url(url: str | None, protocol: str) -> str:
    if not url:
        return f"127.0.0.1:{DEFAULT_PORTS[protocol]}"
    for prefix in ("grpc://", "http://", "https://"):
        url = url.removeprefix(prefix)
    if ":" not in url:
        raise InputError(f"Triton url must be HOST:PORT; got {url!r}")
    return url.rstrip("/")


class _Client:
    """One tritonclient (gRPC or HTTP) with timeouts; ``call`` maps its errors to BackendError."""

    def __init__(self, url: str | None, protocol: str, timeout_s: float) -> None:
        _check_seconds("timeout_s", timeout_s)
        self.protocol = protocol
        self.mod = _module(protocol)
        self.url = _normalise_url(url, protocol)
        self.timeout_s = float(timeout_s)
        # The HTTP client runs on gevent and refuses use from another thread than its creator's:
        # keep one per thread (and per socket timeout, see infer). The gRPC client is
        # thread-safe and shared; its deadlines are per call.
        self._local = threading.local()
        self._clients: list[Any] = []
        self._lock = threading.Lock()
        self._shared = None if protocol == "http" else self._new(self.timeout_s)

    def _new(self, timeout_s: float):
        if self.protocol == "http":
            c = self.mod.InferenceServerClient(self.url, connection_timeout=timeout_s, network_timeout=timeout_s)
        else:
            c = self.mod.InferenceServerClient(self.url)
        with self._lock:
            self._clients.append(c)
        return c

    def _http(self, timeout_s: float):
        clients = getattr(self._local, "clients", None)
        if clients is None:
            clients = self._local.clients = {}
        c = clients.get(timeout_s)
        if c is None:
            c = clients[timeout_s] = self._new(timeout_s)
        return c

    @property
    def client(self):
        """The client for control calls (readiness, metadata), bounded by timeout_s."""
        return self._shared if self._shared is not None else self._http(self.timeout_s)

    def infer(self, deadline_s: float, socket_timeout_s: float, *args: Any, **kwargs: Any):
        """tritonclient's infer with a deadline; raises tritonclient's (or socket) errors as is.

        gRPC: ``deadline_s`` is the call's deadline. HTTP (geventhttpclient) has no per-call
        deadline: each socket operation of the request is bounded by ``socket_timeout_s``
        instead (one client per thread and value, so the pool's sockets keep it).
        """
        if self._shared is not None:
            return self._shared.infer(*args, client_timeout=deadline_s, **kwargs)
        return self._http(socket_timeout_s).infer(*args, **kwargs)

    def kw(self) -> dict[str, Any]:
        """Per-call timeout arguments (gRPC deadlines; HTTP uses the client's socket timeouts)."""
        return {"client_timeout": self.timeout_s} if self.protocol == "grpc" else {}

    def call(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except _exception_type() as exc:
            raise BackendError(f"Triton server at {self.url} ({self.protocol}): {what} failed: {exc}") from exc
        except HumaError:
            raise
        except Exception as exc:  # HTTP (geventhttpclient) raises socket and its own errors directly
            raise BackendError(f"Triton server at {self.url} ({self.protocol}): {what} failed: {type(exc).__name__}: {exc}") from exc

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        last = "not ready"
        while True:
            try:
                if self.client.is_server_ready(**self.kw()) if self.protocol == "grpc" else self.client.is_server_ready():
                    return
            except Exception as exc:  # noqa: BLE001 (any transport error means: not yet)
                last = f"{type(exc).__name__}: {exc}"
            if time.monotonic() >= deadline:
                raise BackendError(f"Triton server at {self.url} ({self.protocol}) is not ready after {timeout_s:.1f} s: {last}")
            time.sleep(0.1)

    def model_config(self, name: str, version: str) -> dict[str, Any]:
        if self.protocol == "grpc":
            cfg = self.call("model config", self.client.get_model_config, name, version, as_json=True, **self.kw())
            return cfg["config"]
        return self.call("model config", self.client.get_model_config, name, version)

    def metadata(self, name: str, version: str) -> dict[str, Any]:
        if self.protocol == "grpc":
            return self.call("model metadata", self.client.get_model_metadata, name, version, as_json=True, **self.kw())
        return self.call("model metadata", self.client.get_model_metadata, name, version)

    def check_model(self, name: str, version: str) -> None:
        """BackendError naming what the server has when ``name`` (``version``) is not ready."""
        ready = self.call("model readiness", self.client.is_model_ready, name, version, **self.kw())
        if ready:
            return
        index = self.call("repository index", self.client.get_model_repository_index, **({"as_json": True} | self.kw()) if self.protocol == "grpc" else {})
        entries = index.get("models", []) if isinstance(index, dict) else index
        versions = sorted({e.get("version", "") for e in entries if e.get("name") == name and e.get("state") == "READY"} - {""})
        if versions:
            raise BackendError(f"Triton server at {self.url} has model '{name}' in version(s) {versions}, not version {version!r} (version mismatch)")
        names = sorted({e.get("name") for e in entries if e.get("state") == "READY"})
        raise BackendError(f"Triton server at {self.url} has no ready model '{name}'; it serves {names}")

    def close(self) -> None:
        with self._lock:
            clients, self._clients = self._clients, []
        for c in clients:
            try:
                c.close()
            except Exception:  # noqa: BLE001 (closing a dead channel must not mask the real error)
                log.debug("closing Triton client failed", exc_info=True)


def _check_seconds(name: str, value: Any) -> float:
    if isinstance(value, bool) or not (isinstance(value, (int, float)) and value > 0):
        raise InputError(f"{name} must be a positive number of seconds; got {value!r}")
    return float(value)


def _failure_kind(exc: BaseException | None) -> str:
    """'deadline' (no answer in time: never retried), 'transport' (failed fast: another try
    may work; socket errors other than a timeout included, as the budget bounds the tries) or
    'final' (the server answered with an error, or an unknown failure)."""
    status = getattr(exc, "status", None)
    code = str(status() if callable(status) else "").upper()
    if any(c in code for c in _DEADLINE_STATUS) or isinstance(exc, TimeoutError):
        return "deadline"
    text = str(exc).lower()
    if any(c in code for c in _TRANSPORT_STATUS) or isinstance(exc, (OSError, EOFError)):
        return "transport"
    if type(exc).__name__ == "HTTPConnectionClosed" or any(t in text for t in _TRANSPORT_TEXT):
        return "transport"  # geventhttpclient: the server closed the connection before answering
    return "final"


def _specs(entries: list[dict[str, Any]]) -> dict[str, TensorSpec]:
    out = {}
    for e in entries:
        if e["datatype"] not in _TRITON_TO_NP:
            raise BackendError(f"tensor '{e['name']}' has Triton type {e['datatype']}, which huma-rt does not bind")
        shape = tuple(int(s) for s in e["shape"])
        out[e["name"]] = TensorSpec(shape, np.dtype(_TRITON_TO_NP[e["datatype"]]), ("",) * len(shape))
    return out


class TritonRunner(Runner):
    """Run one stateless model on a Triton server; bind numpy (or CuPy on "cuda") arrays once.

    Options: ``url`` (HOST:PORT; default 127.0.0.1:8001 for gRPC, :8000 for HTTP), ``protocol``
    ("grpc" default, "http"), ``timeout_s`` (opening: readiness, metadata, and the first request,
    sent by ``bind()``, which may pay cold costs; default 10), ``budget_s`` (the most one
    ``run()`` may take after that, all tries together; default 1.0), ``retries`` (extra tries of
    a request that failed fast on the transport, within the budget; default 2; a deadline is
    never retried),
    ``model_version`` ("" = the server's latest), ``check_source`` (compare the server model's
    source sha256 with a local ONNX path, default True), ``shared_memory`` (False; True: tensors
    travel through POSIX shared-memory regions registered with the server, which must then run
    on this host), ``baked_features`` (False; True: a deformer is served by the repository's
    ``avatar_deformer``, whose features are the avatar's: the bound ``feat`` is checked once at
    bind and never sent again, and concurrent sessions batch on the server; without that model
    the runner sends feat as usual). ``threads`` is accepted and ignored.
    """

    backend = "triton"

    def __init__(
        self, model: str | Path, *, device: str = "cpu", threads: int | None = None, url: str | None = None,
        protocol: str = "grpc", timeout_s: float = DEFAULT_TIMEOUT_S, budget_s: float = DEFAULT_BUDGET_S,
        retries: int = 2, model_version: str = "", check_source: bool = True, shared_memory: bool = False,
        baked_features: bool = False, stream: Any = None,
    ) -> None:  # fmt: skip
        if device not in ("cpu", "cuda"):
            raise InputError(f"device must be 'cpu' or 'cuda'; got {device!r}")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise InputError(f"retries must be an integer >= 0; got {retries!r}")
        self.budget_s = _check_seconds("budget_s", budget_s)
        self.model_name, local = self._resolve_model(model)
        self.model_version = str(model_version)
        self.retries = retries
        self._stream = stream
        self._options = dict(
            url=url, protocol=protocol, timeout_s=timeout_s, budget_s=budget_s, retries=retries,
            model_version=model_version, check_source=check_source, shared_memory=shared_memory,
            baked_features=baked_features,
        )  # fmt: skip
        self.shared_memory = bool(shared_memory)
        self._regions: list[tuple[str, Any]] = []  # (registered name, handle)
        self._finalizer: weakref.finalize | None = None
        self._views: dict[str, np.ndarray] = {}
        self._c = _Client(url, protocol, timeout_s)
        try:
            self._c.wait_ready(timeout_s)
            self._c.check_model(self.model_name, self.model_version)
            config = self._c.model_config(self.model_name, self.model_version)
            self._refuse_stateful(self.model_name, config)
            params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
            if check_source and local is not None and params.get("source_sha256"):
                ours = sha256_file(local)
                if params["source_sha256"] != ours:
                    raise BackendError(
                        f"version mismatch: model '{self.model_name}' on {self._c.url} was built from a different "
                        f"export than {local} (sha256 {params['source_sha256'][:12]}... vs {ours[:12]}...); "
                        "rewrite the repository with 'huma-rt triton-repo' and reload the server"
                    )
            meta = self._c.metadata(self.model_name, self.model_version)
            self._served, self._baked = self.model_name, None
            if baked_features and params.get("network") == "deformer":
                self._use_baked()
        except BaseException:
            self._c.close()
            raise
        super().__init__(_specs(meta["inputs"]), _specs(meta["outputs"]), device)
        self._in: dict[str, Any] = {}
        self._send: dict[str, Any] = {}  # the inputs that travel (all but a baked feat)
        self._out: dict[str, Any] = {}
        self._infer_inputs: list[Any] = []
        self._requested: list[Any] = []
        self.requests = 0  # requests sent (retries included), for benches and tests
        # A frame's end (time.monotonic()) shared by the runners of a frame: a run ends by it
        # even when its own budget_s would allow more. None: budget_s alone bounds a run.
        self.deadline: float | None = None

    def _refuse_stateful(self, name: str, config: dict[str, Any]) -> None:
        """A stateful model (or an ensemble with a stateful step) needs EncoderStream: this
        runner sends no correlation id and retries, which could advance a sequence twice."""
        if config.get("sequence_batching"):
            raise InputError(f"model '{name}' is stateful (sequence batcher); use huma_rt.triton.runner.EncoderStream")
        for step in config.get("ensemble_scheduling", {}).get("step", []):
            sub = step.get("model_name", "")
            if sub and self._c.model_config(sub, "").get("sequence_batching"):
                raise InputError(f"model '{name}' is an ensemble over the stateful model '{sub}' (sequence batcher); use huma_rt.triton.runner.EncoderStream")

    def _use_baked(self) -> None:
        """Serve this deformer through ``avatar_deformer`` (features on the server) if it is there."""
        try:
            self._c.check_model("avatar_deformer", "")
        except BackendError as exc:
            log.info("baked_features asked but the server has no avatar_deformer; sending feat each run (%s)", exc)
            return
        params = {k: v.get("string_value", "") for k, v in self._c.model_config("avatar_deformer", "").get("parameters", {}).items()}
        self._served, self._baked = "avatar_deformer", params
        log.info("%s: served by avatar_deformer on %s (features baked, %s Gaussians)", self.model_name, self._c.url, params.get("gaussians"))

    def _check_baked_feat(self, feat: np.ndarray) -> None:
        """The bound feat must be the one baked into avatar_deformer: same rows, same values
        (bit-equal by sha256, or per-column sums within float tolerance)."""
        p = self._baked or {}
        n = int(p.get("gaussians", -1))
        if feat.ndim != 2 or feat.shape[0] != n:
            raise InputError(f"bound feat has shape {tuple(feat.shape)}, but the server's avatar_deformer holds the features of {n} Gaussians (another avatar?)")
        if hashlib.sha256(np.ascontiguousarray(feat, np.float32).tobytes()).hexdigest() == p.get("feat_sha256"):
            return
        sums = np.asarray(json.loads(p.get("feat_column_sums", "[]")), np.float64)
        got = np.asarray(feat, np.float64).sum(axis=0)
        if sums.shape != got.shape or not np.allclose(got, sums, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(sums).max(initial=0.0)))):
            raise InputError("bound feat differs from the features baked into avatar_deformer on the server (another avatar or export?); rewrite the repository from this bundle")

    @property
    def served_model(self) -> str:
        """The server model that runs: model_name, or avatar_deformer with baked_features."""
        return self._served

    @staticmethod
    def _resolve_model(model: str | Path) -> tuple[str, Path | None]:
        text = str(model)
        if text.endswith((".onnx", ".plan")):
            path = Path(text)
            if not path.is_file():
                raise InputError(f"model {path} does not exist (give a model name on the server or an existing ONNX file)")
            name = path.name.split(".")[0]
            fp32 = path.with_name(f"{name}.fp32.onnx")
            return name, fp32 if fp32.is_file() else (path if path.suffix == ".onnx" else None)
        if not text or "/" in text:
            raise InputError(f"Triton model must be a model name like 'encoder' or an .onnx path; got {text!r}")
        return text, None

    @property
    def url(self) -> str:
        return self._c.url

    def _bind(self, inputs: dict[str, Any], outputs: dict[str, Any]) -> None:
        mod = self._c.mod
        self._free_regions()
        self._in, self._out = inputs, outputs
        self._send = dict(inputs)
        if self._baked is not None:
            self._check_baked_feat(self._host(self._send.pop("feat")))
        self._infer_inputs = [mod.InferInput(n, list(a.shape), _np_to_triton(a.dtype)) for n, a in self._send.items()]
        self._requested = [mod.InferRequestedOutput(n) for n in outputs]
        if self.shared_memory:
            self._map_regions()
        self._bound = True
        try:
            # learn now, not on the first frame, whether the shapes fit the model; this first
            # request may pay cold costs (first inference after a load), so timeout_s bounds it
            self._run(self._c.timeout_s, frame=False)
        except BackendError as exc:
            self._bound = False
            shapes = {n: tuple(a.shape) for n, a in (inputs | outputs).items()}
            raise InputError(f"{self.model_name}: the bound shapes {shapes} do not fit the served model: {exc}") from exc

    def _map_regions(self) -> None:
        """One registered POSIX shm region per bound tensor; numpy views on them (no copies
        through the socket: the server reads inputs and writes outputs in place)."""
        shm = require("tritonclient.utils.shared_memory", "Triton shared-memory transport")
        tag = f"huma_{os.getpid()}_{id(self):x}"
        for kind, arrays, msgs in (("in", self._send, self._infer_inputs), ("out", self._out, self._requested)):
            for msg, (name, arr) in zip(msgs, arrays.items(), strict=True):
                region, size = f"{tag}_{kind}_{name}", max(int(arr.nbytes), 1)
                handle = shm.create_shared_memory_region(region, f"/{region}", size)
                self._regions.append((region, handle))
                if self._finalizer is None:  # unlink the regions even if close() is never called
                    self._finalizer = weakref.finalize(self, _destroy_regions, self._regions)
                self._c.call("shared-memory registration", self._c.client.register_system_shared_memory, region, f"/{region}", size)
                msg.set_shared_memory(region, size)
                self._views[f"{kind}:{name}"] = shm.get_contents_as_numpy(handle, arr.dtype, list(arr.shape))

    def _free_regions(self) -> None:
        for region, _handle in self._regions:
            try:
                self._c.client.unregister_system_shared_memory(region)
            except Exception:  # noqa: BLE001 (the server may be gone; the local region still goes)
                log.debug("unregistering %s failed", region, exc_info=True)
        self._views.clear()  # views pin the mappings: drop them before unmapping
        _destroy_regions(self._regions)

    def _host(self, arr: Any) -> np.ndarray:
        if isinstance(arr, np.ndarray):
            return arr
        if self._stream is not None:
            self._stream.synchronize()
        return arr.get()

    def run(self) -> None:
        """Send the bound inputs, wait for the outputs, copy them into the bound arrays.

        Takes at most ``budget_s`` (and ends by ``deadline`` when that is set), retries
        included; BackendError when the server does not answer in time or keeps failing.
        """
        self._run(self.budget_s, frame=True)

    def _run(self, budget_s: float, frame: bool) -> None:
        if not self._bound:
            self._require_bound()
        if self.shared_memory:
            for name, arr in self._send.items():
                np.copyto(self._views[f"in:{name}"], self._host(arr))
        else:
            for inp, arr in zip(self._infer_inputs, self._send.values(), strict=True):
                inp.set_data_from_numpy(self._host(arr))
        result = self._infer_with_retries(budget_s, self.deadline if frame else None)
        if self.shared_memory:
            for name, out in self._out.items():
                view = self._views[f"out:{name}"]
                if isinstance(out, np.ndarray):
                    np.copyto(out, view)
                else:
                    out.set(view, stream=self._stream)
            return
        for name, out in self._out.items():
            got = result.as_numpy(name)
            if got is None or tuple(got.shape) != tuple(out.shape):
                shape = None if got is None else tuple(got.shape)
                raise BackendError(f"model '{self.model_name}' returned {name} with shape {shape}; the bound array is {tuple(out.shape)}")
            if isinstance(out, np.ndarray):
                np.copyto(out, got, casting="same_kind")
            else:
                out.set(got, stream=self._stream)

    def _infer_with_retries(self, budget_s: float, deadline: float | None):
        t0 = time.monotonic()
        end = t0 + budget_s if deadline is None else min(t0 + budget_s, deadline)
        delay, attempt = _BACKOFF_S, 0
        while True:
            left = end - time.monotonic()
            if left <= 0:  # only with a frame deadline that passed before this run started
                raise BackendError(f"{self._where()}: inference of '{self.model_name}' not sent: the frame's deadline passed {-left:.3f} s ago")
            attempt += 1
            self.requests += 1
            try:
                return self._c.infer(
                    left, budget_s, self._served, self._infer_inputs, model_version=self.model_version, outputs=self._requested
                )  # fmt: skip
            except Exception as exc:  # tritonclient's, socket and geventhttpclient errors
                text = f"{type(exc).__name__}: {exc}" if isinstance(exc, OSError) or not str(exc) else str(exc)
                kind = _failure_kind(exc)
                spent = time.monotonic() - t0
                tries = f"{attempt} request{'s' if attempt > 1 else ''} in {spent:.2f} s"
                if kind == "deadline":
                    raise BackendError(
                        f"{self._where()}: inference of '{self.model_name}' failed: no answer within the run's budget of "
                        f"{end - t0:.3g} s ({tries}; a deadline is not retried: the server is frozen or overloaded): {text}"
                    ) from exc
                if kind == "final" or attempt > self.retries:
                    raise BackendError(f"{self._where()}: inference of '{self.model_name}' failed after {tries} (budget {end - t0:.3g} s): {text}") from exc
                if end - time.monotonic() < 2 * delay:  # no time left for the pause and a try
                    raise BackendError(
                        f"{self._where()}: inference of '{self.model_name}' failed after {tries}; the run's budget of {end - t0:.3g} s "
                        f"leaves no time for another try: {text}"
                    ) from exc
                log.warning("Triton %s at %s: attempt %d failed (%s); retrying in %.0f ms", self.model_name, self._c.url, attempt, text, 1e3 * delay)
                time.sleep(delay)
                delay *= 2

    def _where(self) -> str:
        return f"Triton server at {self._c.url} ({self._c.protocol})"

    def fork(self, **options: Any) -> TritonRunner:
        """Another runner on the same server model with its own client and bindings."""
        opts = self._options | {k: v for k, v in options.items() if k in self._options or k == "stream"}
        unknown = sorted(set(options) - set(self._options) - {"stream"})
        if unknown:
            raise InputError(f"fork() got unknown options {unknown}")
        return TritonRunner(self.model_name, device=self.device, stream=opts.pop("stream", self._stream), **opts)

    def close(self) -> None:
        if not self._closed:
            self._free_regions()
            self._c.close()
        self._in, self._send, self._out = {}, {}, {}
        super().close()


def _destroy_regions(regions: list[tuple[str, Any]]) -> None:
    """Unmap and unlink local shm regions (the server side is unregistered by the runner)."""
    if not regions:
        return
    shm = require("tritonclient.utils.shared_memory", "Triton shared-memory transport")
    for region, handle in regions:
        try:
            shm.destroy_shared_memory_region(handle)
        except Exception:  # noqa: BLE001 (best effort at teardown; a mapping may still be viewed)
            log.debug("destroying shm region %s failed", region, exc_info=True)
    regions.clear()


def _np_to_triton(dtype: np.dtype) -> str:
    for k, v in _TRITON_TO_NP.items():
        if np.dtype(v) == np.dtype(dtype):
            return k
    raise InputError(f"dtype {np.dtype(dtype).name} cannot be sent to Triton by huma-rt")


def new_sequence_id() -> int:
    """A correlation id unique within this process and unlikely to collide across processes."""
    with _seq_lock:
        return next(_seq_ids)


class EncoderStream:
    """One avatar session on the server's ``encoder_stream`` model (Triton sequence batcher).

    ``push(mel)`` sends new log-mel rows ([T, n_mels] or [1, T, n_mels], T a multiple of the
    mels per frame; the first push starts with the session's first full receptive window) and
    returns the codes of the frames that became complete, [F, code_dim] (F may be 0).
    ``push(mel, end=True)`` or ``close()`` ends the sequence. Never retried (not idempotent):
    after a failed push, deadline included, the server's context is unknown (a frozen server
    may still run the request when it resumes) and the stream refuses further pushes.
    ``timeout_s`` bounds opening and the first push (it starts the sequence: cold), ``budget_s``
    each later push.
    """

    def __init__(
        self, url: str | None = None, *, protocol: str = "grpc", model: str = "encoder_stream",
        sequence_id: int | None = None, timeout_s: float = DEFAULT_TIMEOUT_S, budget_s: float = DEFAULT_BUDGET_S,
    ) -> None:  # fmt: skip
        self.budget_s = _check_seconds("budget_s", budget_s)
        self._c = _Client(url, protocol, timeout_s)
        self.model = model
        self.sequence_id = new_sequence_id() if sequence_id is None else int(sequence_id)
        if self.sequence_id <= 0:
            raise InputError(f"sequence_id must be a positive integer; got {sequence_id!r}")
        try:
            self._c.check_model(model, "")
            config = self._c.model_config(model, "")
        except BaseException:
            self._c.close()
            raise
        if not config.get("sequence_batching"):
            self._c.close()
            raise BackendError(f"model '{model}' on {self._c.url} has no sequence batcher; it cannot keep a session's context")
        dims = [int(d) for d in config["input"][0]["dims"]]
        self.n_mels = dims[-1]
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        self.mels_per_frame = int(params.get("mels_per_frame", "1"))
        self._started = False
        self._ended = False

    def push(self, mel: np.ndarray, *, end: bool = False) -> np.ndarray:
        """mel [T, n_mels] or [1, T, n_mels] float32 -> codes [F, code_dim] float32."""
        if self._ended:
            raise BackendError(f"sequence {self.sequence_id} has ended; open a new EncoderStream")
        mel = np.asarray(mel)
        if mel.ndim == 2:
            mel = mel[None]
        if mel.ndim != 3 or mel.shape[0] != 1 or mel.shape[2] != self.n_mels or mel.shape[1] % self.mels_per_frame:
            raise InputError(f"mel must be [T, {self.n_mels}] with T a multiple of {self.mels_per_frame}; got {list(np.shape(mel))}")
        if mel.dtype != np.float32:
            raise InputError(f"mel must be float32; got {mel.dtype}")
        inp = self._c.mod.InferInput("mel", list(mel.shape), "FP32")
        inp.set_data_from_numpy(np.ascontiguousarray(mel))
        budget = self.budget_s if self._started else self._c.timeout_s
        t0 = time.monotonic()
        try:
            result = self._c.call(
                f"sequence {self.sequence_id} request", self._c.infer, budget, budget, self.model, [inp],
                sequence_id=self.sequence_id, sequence_start=not self._started, sequence_end=end,
                outputs=[self._c.mod.InferRequestedOutput("code")],
            )  # fmt: skip
        except BackendError as exc:
            self._ended = True  # the server's context is now unknown: the session must restart
            if _failure_kind(exc.__cause__) == "deadline":
                raise BackendError(
                    f"{exc} (no answer within the push's budget of {budget:.3g} s, after {time.monotonic() - t0:.2f} s; "
                    f"sequence {self.sequence_id} is over: not retried, its state on the server is unknown)"
                ) from exc.__cause__
            raise
        self._started = True
        self._ended = end
        return result.as_numpy("code")[0]

    def close(self) -> None:
        """End the sequence on the server (a final request with no rows) and close the client."""
        try:
            if self._started and not self._ended:
                try:
                    self.push(np.zeros((0, self.n_mels), np.float32), end=True)
                except (BackendError, InputError) as exc:
                    log.debug("ending sequence %d failed: %s", self.sequence_id, exc)
        finally:
            self._ended = True
            self._c.close()

    def __enter__(self) -> EncoderStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
