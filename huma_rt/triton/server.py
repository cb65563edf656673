"""Start and stop the real ``tritonserver`` binary bundled by nvidia-pytriton.

The wheel ships the server, its python backend and one python-backend stub per Python version,
but not in the layout the server expects: ``prepare_backend_dir`` assembles a backend folder
(``python/libtriton_python.so`` + the stub for the models' Python) and ``TritonServer`` runs the
binary with the bundled shared libraries on ``LD_LIBRARY_PATH``, free ports on 127.0.0.1, waits
for readiness and always stops the whole process group.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import signal
import socket
import subprocess
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from huma_rt.errors import BackendError, InputError, MissingDependencyError

log = logging.getLogger(__name__)


def pytriton_root() -> Path:
    """Folder of the installed ``pytriton`` package (holds tritonserver/ and the stubs)."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            "the Triton server comes from nvidia-pytriton, which is not installed; install it with: "
            "pip install --no-deps nvidia-pytriton==0.7.0"
        )
    return Path(list(spec.submodule_search_locations)[0])


def tritonserver_binary() -> Path:
    """Path of the bundled ``tritonserver`` executable."""
    path = pytriton_root() / "tritonserver" / "bin" / "tritonserver"
    if not path.is_file():
        raise MissingDependencyError(f"nvidia-pytriton is installed but {path} is missing")
    return path


def _env_python_version(env_dir: Path) -> str:
    """'3.11' for a venv whose bin/python is Python 3.11 (read from pyvenv.cfg, no subprocess)."""
    cfg = env_dir / "pyvenv.cfg"
    if cfg.is_file():
        for line in cfg.read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() in ("version", "version_info"):
                return ".".join(value.strip().split(".")[:2])
    libs = sorted((env_dir / "lib").glob("python3.*"))
    if libs:
        return libs[-1].name.removeprefix("python")
    raise InputError(f"cannot tell the Python version of the environment {env_dir} (no pyvenv.cfg, no lib/python3.*)")


def check_model_env(env_dir: str | Path) -> Path:
    """Check the python-backend models' environment (numpy<2 + onnxruntime) and return it.

    Raises MissingDependencyError with the command that creates it when it is absent: with
    numpy 2 the 2.51 stub hands models all-zero inputs, so the main venv cannot stand in.
    """
    env_dir = Path(env_dir).resolve()
    site = sorted((env_dir / "lib").glob("python3.*/site-packages"))
    if not (env_dir / "bin" / "python").exists() or not site:
        raise MissingDependencyError(
            f"the Triton python-backend environment {env_dir} does not exist; create it with "
            "'make triton-env' (a venv with numpy<2 and onnxruntime)"
        )
    numpy_dirs = list(site[-1].glob("numpy-*.dist-info"))
    if not numpy_dirs or not (site[-1] / "onnxruntime").is_dir():
        raise MissingDependencyError(f"{env_dir} lacks numpy or onnxruntime; run 'make triton-env'")
    version = numpy_dirs[0].name.split("-")[1]
    if int(version.split(".")[0]) >= 2:
        raise MissingDependencyError(
            f"{env_dir} has numpy {version}; the Triton 2.51 python-backend stub needs numpy<2 "
            "(with numpy 2 inputs arrive as zeros); run 'make triton-env'"
        )
    return env_dir


def prepare_backend_dir(dest: Path, python_version: str) -> Path:
    """Assemble ``dest/python`` (backend library, utils, stub for ``python_version``)."""
    root = pytriton_root() / "tritonserver"
    stub = root / "python_backend_stubs" / python_version / "triton_python_backend_stub"
    if not stub.is_file():
        have = sorted(p.name for p in (root / "python_backend_stubs").iterdir())
        raise MissingDependencyError(f"nvidia-pytriton has no python-backend stub for Python {python_version}; it has {have}")
    py = dest / "python"
    py.mkdir(parents=True, exist_ok=True)
    for src in (root / "backends" / "python" / "libtriton_python.so", root / "backends" / "python" / "triton_python_backend_utils.py", stub):
        target = py / src.name
        if not target.exists():
            shutil.copy2(src, target)
    return dest


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerConfig:
    """How to run tritonserver: repository, models' environment, ports, start-up limits."""

    repository: Path
    model_env: Path | None = None  # venv with numpy<2 + onnxruntime for python-backend models
    http_port: int = 0  # 0: pick a free port
    grpc_port: int = 0
    start_timeout_s: float = 60.0
    log_verbose: int = 0
    extra_args: list[str] = field(default_factory=list)


class TritonServer:
    """A running ``tritonserver`` process; use as a context manager or call start()/stop().

    Attributes after start(): ``http_url`` ("127.0.0.1:PORT"), ``grpc_url``, ``log_path``.
    """

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        repo = Path(config.repository)
        if not repo.is_dir():
            raise InputError(f"model repository {repo} is not a folder")
        self._proc: subprocess.Popen | None = None
        self._work = Path(tempfile.mkdtemp(prefix="huma-triton-"))
        self.log_path = self._work / "server.log"
        self.http_port = config.http_port or free_port()
        self.grpc_port = config.grpc_port or free_port()
        self.http_url = f"127.0.0.1:{self.http_port}"
        self.grpc_url = f"127.0.0.1:{self.grpc_port}"
        self._shm_prefix = f"huma_triton_{os.getpid()}_{self._work.name.rsplit('-', 1)[-1]}_"

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        libs = [str(pytriton_root().parent / "nvidia_pytriton.libs"), sysconfig.get_config_var("LIBDIR") or ""]
        if env.get("LD_LIBRARY_PATH"):
            libs.append(env["LD_LIBRARY_PATH"])
        env["LD_LIBRARY_PATH"] = ":".join(p for p in libs if p)
        if self.config.model_env is not None:
            # The stub's embedded Python resolves its packages from the first python on PATH.
            env["PATH"] = f"{Path(self.config.model_env) / 'bin'}:{env.get('PATH', '')}"
            env["VIRTUAL_ENV"] = str(self.config.model_env)
        return env

    def start(self) -> TritonServer:
        """Launch the server and block until it is ready (or raise BackendError with its log).

        Auto-picked ports can be taken by someone else between the probe and the server's bind;
        then the server exits at once saying so, and we try again on new ports (3 tries).
        """
        if self._proc is not None:
            return self
        for attempt in range(3):
            try:
                return self._start_once()
            except BackendError as exc:
                auto = not (self.config.http_port or self.config.grpc_port)
                if not (auto and "already in use" in str(exc)) or attempt == 2:
                    raise
                log.warning("tritonserver port taken; retrying on new ports")
                self.http_port, self.grpc_port = free_port(), free_port()
                self.http_url, self.grpc_url = f"127.0.0.1:{self.http_port}", f"127.0.0.1:{self.grpc_port}"
                self._work = Path(tempfile.mkdtemp(prefix="huma-triton-"))
                self.log_path = self._work / "server.log"
        raise AssertionError("unreachable")

    def _start_once(self) -> TritonServer:
        version = _env_python_version(Path(self.config.model_env)) if self.config.model_env else sysconfig.get_python_version()
        backends = prepare_backend_dir(self._work / "backends", version)
        cmd = [
            str(tritonserver_binary()),
            f"--model-repository={Path(self.config.repository).resolve()}",
            f"--backend-directory={backends}",
            f"--http-port={self.http_port}", f"--grpc-port={self.grpc_port}",
            "--http-address=127.0.0.1", "--grpc-address=127.0.0.1",
            "--allow-metrics=false", "--allow-sagemaker=false", "--allow-vertex-ai=false",
            f"--log-verbose={self.config.log_verbose}",
            # Our own prefix for the python backend's /dev/shm regions, so stop() can remove
            # what a killed (or slow to unload) server leaves behind.
            f"--backend-config=python,shm-region-prefix-name={self._shm_prefix}",
            "--exit-timeout-secs=5",
            *self.config.extra_args,
        ]  # fmt: skip
        log.info("starting %s", " ".join(cmd))
        self._log_file = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop())
        # Own process group: stop() kills the server and every python-backend stub it forked.
        self._proc = subprocess.Popen(cmd, env=self._env(), stdout=self._log_file, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.config.start_timeout_s
        url = f"http://{self.http_url}/v2/health/ready"
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise BackendError(f"tritonserver exited with code {self._proc.returncode} while starting:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=1.0) as resp:
                    if resp.status == 200:
                        log.info("tritonserver ready on http %s grpc %s", self.http_url, self.grpc_url)
                        return
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.1)
        raise BackendError(f"tritonserver not ready after {self.config.start_timeout_s} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        """Last ``lines`` lines of the server log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    @property
    def pid(self) -> int | None:
        """The server's process id (it leads its own process group), None when not started."""
        return None if self._proc is None else self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM the process group, SIGKILL it after ``timeout_s``; idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None:
            for sig, wait in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
            # Stubs may outlive the server briefly; make sure the group is gone.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if getattr(self, "_log_file", None) is not None:
            self._log_file.close()
            self._log_file = None
            shutil.rmtree(self._work, ignore_errors=True)
        for leftover in Path("/dev/shm").glob(f"{self._shm_prefix}*"):
            leftover.unlink(missing_ok=True)

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __del__(self) -> None:
        if self._proc is not None:
            self.stop()
