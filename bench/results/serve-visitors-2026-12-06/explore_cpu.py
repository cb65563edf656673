"""Exploration script kept with its results (not a shipped benchmark): N served pages idle for
--secs; prints one JSON line: CPU % of a core per Chromium process type and per thread, per
worker thread (worker 1, names from py-spy dump), the pages' decoded fps and audio concealment.

    .venv/bin/python bench/results/serve-visitors-2026-12-06/explore_cpu.py -n 1 --secs 15 [--measure]
        [--shared] [--extra=--chromium-switch] [--init noframes|nolevels|noboth|noaudioctx]

--init injects JS before the page runs (used before the page's ?measure=1 gate existed, to switch
off one piece of the page's instrumentation at a time)."""
import json, os, subprocess, sys, time, argparse, tempfile
from pathlib import Path
sys.path.insert(0, "/work/main")
from huma_rt.bench import _proc
from huma_rt.bench import _browser
from huma_rt.bench._browser import Browser, process_type, Page, Server, silence, write_wav48
import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument("-n", type=int, default=1)
ap.add_argument("--secs", type=float, default=15)
ap.add_argument("--query", default="")
ap.add_argument("--extra", nargs="*", default=[])
ap.add_argument("--serve", nargs="*", default=[])
ap.add_argument("--init", default="")
ap.add_argument("--spy", default="")
ap.add_argument("--shared", action="store_true")
ap.add_argument("--measure", action="store_true")
ap.add_argument("--typed", action="store_true")
a = ap.parse_args()

def ptype(pid):
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").split()
    except FileNotFoundError:
        return "gone"
    for x in args:
        if x.startswith(b"--type="):
            t = x[7:].decode()
            if t == "utility":
                for y in args:
                    if y.startswith(b"--utility-sub-type="):
                        return "utility:" + y.decode().split("=")[1].split(".")[-1]
            return t
    return "browser"

INIT = {
 "noframes": "HTMLVideoElement.prototype.requestVideoFrameCallback = function(){ return 0; };",
 "nolevels": "{ const si = window.setInterval; window.setInterval = function(f, ms, ...r){ return ms === 10 ? 0 : si(f, ms, ...r); }; }",
 "noboth": "HTMLVideoElement.prototype.requestVideoFrameCallback = function(){ return 0; }; { const si = window.setInterval; window.setInterval = function(f, ms, ...r){ return ms === 10 ? 0 : si(f, ms, ...r); }; }",
 "noaudioctx": "HTMLVideoElement.prototype.requestVideoFrameCallback = function(){ return 0; }; { const si = window.setInterval; window.setInterval = function(f, ms, ...r){ return ms === 10 ? 0 : si(f, ms, ...r); }; } window.AudioContext = function(){ const an = () => ({getFloatTimeDomainData(){}}); return {createAnalyser: an, createMediaStreamSource: () => ({connect(){}})}; };",
}
work = Path(tempfile.mkdtemp())
wav = write_wav48(work / "s.wav", silence(2.0))
extra = a.extra
orig_init = Page.__init__
srv = Server("--max-visitors", str(a.n), "--warm", str(a.n), "--responder", "scripted", "--reply", "Sure, it is sunny and warm.", "--idle-timeout", "600", *a.serve, ready_workers=a.n, timeout=300)
from playwright.sync_api import sync_playwright
try:
    with sync_playwright() as pw:
        pages = []
        for _ in range(a.n):
            if a.shared and not pages:
                shared = Browser(pw, wav, tuple(extra))
            p = Page(pw, srv.url + a.query, wav, measure=a.measure, browser=shared if a.shared else None, extra_args=tuple(extra) if not a.shared else ())
            if a.init:
                p.page.add_init_script(INIT[a.init]); p.page.reload()
            p.start(); p.js("huma.setMic(false)"); pages.append(p)
        time.sleep(4)
        workers = [int(p.js("huma.worker")) for p in pages]
        pids = {pid: process_type(pid) for p in pages for pid in _proc.descendants(p.browser_pids())}
        c0 = {pid: _proc.cpu_seconds(pid) for pid in pids}
        def thr():
            out = {}
            for pid, t in pids.items():
                for task in Path(f"/proc/{pid}/task").glob("*"):
                    try:
                        comm = (task / "comm").read_text().strip()
                        f = (task / "stat").read_text().rsplit(")", 1)[1].split()
                    except Exception:
                        continue
                    k = t.split(":")[-1][:8] + "/" + comm
                    out[k] = out.get(k, 0) + (int(f[11]) + int(f[12])) / _proc.TICK
            return out
        th0 = thr()
        def wthr():
            out = {}
            for w in workers:
                for task in Path(f"/proc/{w}/task").glob("*"):
                    try:
                        comm = (task / "comm").read_text().strip()
                        f = (task / "stat").read_text().rsplit(")", 1)[1].split()
                    except Exception:
                        continue
                    out[int(task.name)] = out.get(int(task.name), 0) + (int(f[11]) + int(f[12])) / _proc.TICK
            return out
        wt0 = wthr()
        w0 = {w: _proc.cpu_seconds(w) for w in workers}; s0 = _proc.cpu_seconds(srv.proc.pid)
        st0 = [p.receive_stats() for p in pages]
        t0 = time.monotonic()
        if a.typed:
            for i, p in enumerate(pages): p.js(f"huma.ask('Question number {i+1}?')")
        if a.spy:
            subprocess.run(["/work/main/.venv/bin/py-spy", "record", "--pid", str(workers[0]), "--duration", str(int(a.secs)), "--rate", "100", "--format", "raw", "--output", a.spy, "--nonblocking", "--threads"], capture_output=True)
        else:
            time.sleep(a.secs)
        dt = time.monotonic() - t0
        st1 = [p.receive_stats() for p in pages]
        by = {}
        for pid, t in pids.items():
            by[t] = by.get(t, 0) + (_proc.cpu_seconds(pid) - c0[pid])
        th1 = thr()
        wt1 = wthr()
        dump = subprocess.run(["/work/main/.venv/bin/py-spy", "dump", "--pid", str(workers[0])], capture_output=True, text=True).stdout
        import re
        tidname = {}
        for line in dump.splitlines():
            m = re.match(r'Thread (\S+) \((\w+)\): "([^"]+)"', line)
            if m:
                tid = m.group(1)
                tidname[int(tid, 16) if tid.startswith("0x") else int(tid)] = m.group(3)
        wtd = {tidname.get(k, str(k)): round(100*(v - wt0.get(k, 0))/dt, 1) for k, v in wt1.items() if k in set(int(t.name) for t in Path(f"/proc/{workers[0]}/task").glob("*"))}
        wtd = dict(sorted(((k, v) for k, v in wtd.items() if v >= 0.2), key=lambda kv: -kv[1]))
        thd = {k: round(100*(v - th0.get(k, 0))/dt, 1) for k, v in th1.items()}
        thd = dict(sorted(((k, v) for k, v in thd.items() if v >= 0.5), key=lambda kv: -kv[1]))
        res = {"worker_threads_per_worker": wtd, "threads": thd, "shared": a.shared, "measure": a.measure, "n": a.n, "query": a.query, "extra": extra, "serve": a.serve, "secs": round(dt,1), "load": os.getloadavg()[0],
               "chromium_pct": {k: round(100*v/dt, 1) for k, v in sorted(by.items(), key=lambda kv: -kv[1])},
               "chromium_total": round(100*sum(by.values())/dt, 1),
               "workers_pct": [round(100*(_proc.cpu_seconds(w)-w0[w])/dt, 1) for w in workers],
               "server_pct": round(100*(_proc.cpu_seconds(srv.proc.pid)-s0)/dt, 1),
               "fps": [round((b["video"]["frames_decoded"]-a_["video"]["frames_decoded"])/((b["t"]-a_["t"])/1000),1) for a_, b in zip(st0, st1)],
               "conceal_pct": [round(100*(b["audio"]["concealed"]-a_["audio"]["concealed"])/max(1,b["audio"]["samples"]-a_["audio"]["samples"]),2) for a_, b in zip(st0, st1)]}
        print(json.dumps(res))
        for p in pages: p.close()
finally:
    srv.close()
