"""Worker processes, one per visitor, started ahead of time so a visitor does not wait for a load.

Measured: four visitors served by one Python process fell behind real time; one process per
visitor held 29 fps. So every visitor gets a fresh ``huma_rt.serve.worker`` process, which
shares nothing with the others but the read-only bundle files, and exits when the visit ends.

The pool keeps ``warm`` loaded, unassigned workers (never more than ``max_visitors`` processes
for visitors and warm spares together beyond the visitors themselves), refills after every
visitor, and says "busy" when ``max_visitors`` visits are running.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys

from huma_rt.errors import HumaError

log = logging.getLogger(__name__)


class BusyError(HumaError):
    """Every visitor slot is taken."""


class WorkerError(HumaError):
    """A worker failed to load or to answer."""


class Worker:
    """A worker process and its JSON-lines protocol."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.ready: asyncio.Future = asyncio.get_running_loop().create_future()
        self.replies: asyncio.Queue = asyncio.Queue()
        self.assigned = False
        self.ended: dict | None = None
        self.exited = asyncio.Event()

    async def offer(self, sdp: str, kind: str, timeout: float) -> dict:
        self._send({"op": "offer", "sdp": sdp, "type": kind})
        try:
            reply = await asyncio.wait_for(self.replies.get(), timeout)
        except asyncio.TimeoutError as exc:
            raise WorkerError(f"worker {self.pid} did not answer the offer within {timeout:.0f} s") from exc
        return reply

    def stop(self) -> None:
        self._send({"op": "stop"})

    def _send(self, msg: dict) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.write((json.dumps(msg) + "\n").encode())


class WorkerPool:
    """``take()`` -> a loaded worker for a new visitor, or BusyError."""

    def __init__(self, worker_config_json: str, max_visitors: int = 4, warm: int = 1,
                 load_timeout_s: float = 120.0) -> None:  # fmt: skip
        self.config_json = worker_config_json
        self.max_visitors = max_visitors
        self.warm = warm
        self.load_timeout_s = load_timeout_s
        self.workers: list[Worker] = []
        self.reserved = 0  # visitors between take() and their worker being assigned
        self.served = 0
        self.failures: list[str] = []
        self._closing = False

    @property
    def visitors(self) -> int:
        return sum(1 for w in self.workers if w.assigned) + self.reserved

    def idle(self) -> list[Worker]:
        return [w for w in self.workers if not w.assigned]

    async def start(self) -> None:
        self._refill()

    def status(self) -> dict:
        return {"visitors": self.visitors, "max_visitors": self.max_visitors,
                "warm": sum(1 for w in self.idle() if w.ready.done() and not w.ready.exception()),
                "starting": sum(1 for w in self.idle() if not w.ready.done()),
                "served": self.served, "worker_pids": [w.pid for w in self.workers]}  # fmt: skip

    def _refill(self) -> None:
        if self._closing:
            return
        want = min(self.warm, self.max_visitors - self.visitors)
        for _ in range(want - len(self.idle())):
            asyncio.ensure_future(self._spawn())

    async def _spawn(self) -> Worker:
        env = dict(os.environ)
        # idle OpenMP/onnxruntime threads sleep: a spinning one holds the renderer's barriers
        # hostage when several visitors share cores
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "huma_rt.serve.worker", self.config_json,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env, limit=1 << 20)  # fmt: skip
        worker = Worker(proc)
        self.workers.append(worker)
        asyncio.ensure_future(self._read(worker))
        log.info("started worker %d", worker.pid)
        return worker

    async def _read(self, worker: Worker) -> None:
        assert worker.proc.stdout is not None
        while True:
            line = await worker.proc.stdout.readline()
            if not line:
                break
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            ev = msg.get("event")
            if ev == "ready" and not worker.ready.done():
                log.info("worker %d ready (loaded in %.2f s)", worker.pid, msg.get("load_s", 0))
                worker.ready.set_result(msg)
            elif ev == "failed" and not worker.ready.done():
                worker.ready.set_exception(WorkerError(f"worker failed to load: {msg.get('message')}"))
                self.failures.append(str(worker.ready.exception()))
            elif ev in ("answer", "offer_error"):
                worker.replies.put_nowait(msg)
            elif ev == "ended":
                worker.ended = msg
                log.info("worker %d: visit ended (%s) %s", worker.pid, msg.get("reason"), msg.get("stats"))
        await worker.proc.wait()
        if not worker.ready.done():
            worker.ready.set_exception(WorkerError(f"worker {worker.pid} exited with {worker.proc.returncode} "
                                                   "before it was ready (see its log above)"))  # fmt: skip
            self.failures.append(str(worker.ready.exception()))
        worker.replies.put_nowait({"event": "offer_error", "message": "the worker exited"})
        if worker in self.workers:
            self.workers.remove(worker)
        worker.exited.set()
        if not worker.assigned and not self._closing and self.failures:
            log.error("%s", self.failures[-1])
            return  # a worker that cannot load will not load the next time either
        self._refill()

    async def take(self) -> Worker:
        """A loaded worker, assigned to a new visitor; BusyError when all slots are taken."""
        if self.visitors >= self.max_visitors:
            raise BusyError(f"busy: {self.visitors} of {self.max_visitors} visitors are connected; try again later")
        self.reserved += 1
        try:
            loaded = [w for w in self.idle() if w.ready.done() and not w.ready.exception()]
            worker = loaded[0] if loaded else (self.idle()[0] if self.idle() else await self._spawn())
            worker.assigned = True  # before the wait: nobody else takes it
            self.reserved -= 1
        except BaseException:
            self.reserved -= 1
            raise
        try:
            await asyncio.wait_for(asyncio.shield(worker.ready), self.load_timeout_s)
        except asyncio.TimeoutError as exc:
            self.release(worker)
            raise WorkerError(f"no worker was ready within {self.load_timeout_s:.0f} s") from exc
        except BaseException:
            self.release(worker)
            raise
        self.served += 1
        self._refill()
        return worker

    async def first_ready(self) -> dict:
        """Wait for the first warm worker to load; WorkerError with its message if it cannot."""
        while True:
            starting = [w for w in self.idle() if not w.ready.done()]
            loaded = [w for w in self.idle() if w.ready.done() and not w.ready.exception()]
            if loaded:
                return loaded[0].ready.result()
            if not starting:
                if self.failures or any(w.ready.done() for w in self.idle()):
                    raise WorkerError(self.failures[-1] if self.failures else "no worker could start")
                await asyncio.sleep(0.1)
                continue
            await asyncio.wait([starting[0].ready], timeout=1.0)
            if starting[0].ready.done() and starting[0].ready.exception():
                raise starting[0].ready.exception()

    def release(self, worker: Worker) -> None:
        """End a worker's visit (it exits; the pool refills when it has)."""
        worker.stop()
        if worker.proc.stdin is not None:
            worker.proc.stdin.close()

    async def close(self, timeout: float = 5.0) -> None:
        self._closing = True
        for w in list(self.workers):
            self.release(w)
        waits = [w.exited.wait() for w in list(self.workers)]
        if waits:
            done, pending = await asyncio.wait([asyncio.ensure_future(x) for x in waits], timeout=timeout)
            for p in pending:
                p.cancel()
        for w in list(self.workers):
            if w.proc.returncode is None:
                w.proc.kill()
                await w.proc.wait()
