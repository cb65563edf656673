"""Scaling-curve plots (PNG, matplotlib Agg) from the JSON results of a benchmark folder.

``draw_all(out_dir)`` reads every ``<scenario>.json`` there (the shape bench/common.py's
write_result gives: {"scenario", "results": [rows]}) and draws what it finds:

- ``scaling_gaussians.png``  p50 vs Gaussian count (rows with ``gaussians``/``n_gaussians``/``N``)
- ``scaling_resolution.png`` p50 vs resolution (rows with ``resolution``/``width``, or a
  ``size`` string ``"WxH"``)
- ``scaling_sessions.png``   per-frame p50 vs concurrent sessions (``sessions``, or a string
  field ``"sessions=K"`` as bench/runtime.py writes)
- ``full_vs_dynamic.png``    full-frame vs dynamic-region render p50 (rows naming ``full frame`` and
  ``dynamic`` in a ``mode``/``region``/``render``/``case``/``backend``/``what``/``scenario`` field)

The y value of a row is its first of ``frame_p50_ms``, ``p50_ms``, ``huma_p50_ms``, else any
``*_p50_ms`` key (one series per such key). A series needs two distinct x values; scenarios that
are missing or hold no such rows are skipped without error (their absence is logged).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

log = logging.getLogger(__name__)

X_KEYS = {
    "gaussians": ("gaussians", "n_gaussians", "num_gaussians", "N"),
    "resolution": ("resolution", "width"),  # not "size": bench/engines.py uses it for N
    "sessions": ("sessions", "concurrent_sessions", "concurrency"),
}
Y_KEYS = ("frame_p50_ms", "p50_ms", "huma_p50_ms")
# string fields that name a series (which implementation/configuration a row measures)
LABEL_KEYS = ("backend", "impl", "renderer", "pipeline", "transport", "request", "precision", "graph",
              "model", "device", "mode", "threads", "stage")
MODE_KEYS = ("mode", "region", "render", "case", "backend", "what", "scenario")
_MODE = re.compile(r"dynamic|full[ _-]?frame", re.IGNORECASE)  # not "full_chain" (bench/speech.py)


def load_results(out_dir: Path) -> dict[str, list[dict]]:
    """{scenario: rows} for every readable ``*.json`` result in ``out_dir`` (summary excluded)."""
    found: dict[str, list[dict]] = {}
    for path in sorted(Path(out_dir).glob("*.json")):
        if path.name == "summary.json":
            continue
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            log.warning("skipping unreadable result %s: %s", path, exc)
            continue
        rows = record.get("results") if isinstance(record, dict) else None
        if isinstance(rows, list):
            found[str(record.get("scenario", path.stem))] = [r for r in rows if isinstance(r, dict)]
    return found


def _number(v) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):  # "512x512" -> 512 (square or width first)
        head = v.lower().split("x")[0].strip()
        try:
            return float(head)
        except ValueError:
            return None
    if isinstance(v, (list, tuple)) and v and isinstance(v[0], (int, float)):
        return float(v[0])
    return None


def _axis_key(row: dict, axis: str) -> str | None:
    """The row's key for ``axis``; a ``"size": "WxH"`` string counts as a resolution
    (bench/raster.py), a numeric ``size`` does not (bench/engines.py uses it for N)."""
    key = next((k for k in X_KEYS[axis] if k in row), None)
    if key is None and axis == "resolution" and isinstance(row.get("size"), str) and "x" in row["size"].lower():
        key = "size"
    return key


def _tagged(row: dict, axis: str) -> float | None:
    """x from a string field such as ``"scenario": "sessions=4"`` (bench/runtime.py's rows)."""
    for v in row.values():
        if isinstance(v, str):
            m = re.fullmatch(rf"\s*{axis}\s*=\s*(\d+(?:\.\d+)?)\s*", v)
            if m:
                return float(m.group(1))
    return None


def _y_values(row: dict) -> dict[str, float]:
    for key in Y_KEYS:
        if isinstance(row.get(key), (int, float)):
            return {"": float(row[key])}
    return {k[: -len("_p50_ms")]: float(v) for k, v in row.items()
            if k.endswith("_p50_ms") and isinstance(v, (int, float))}


def curves(results: dict[str, list[dict]], axis: str) -> dict[str, list[tuple[float, float]]]:
    """{series label: sorted [(x, p50 ms)]} along ``axis`` (a key of X_KEYS); >= 2 points each.

    A series is one scenario, one value of each label field, and one value of each other axis
    (e.g. the count curve at 512 px is apart from the one at 1024 px).
    """
    out: dict[str, dict[float, float]] = {}
    for scenario, rows in results.items():
        for row in rows:
            xkey = _axis_key(row, axis)
            x = _number(row.get(xkey)) if xkey else _tagged(row, axis)
            if x is None:
                continue
            parts = [scenario] + [f"{row[k]}" for k in LABEL_KEYS if isinstance(row.get(k), (str, int)) and k != xkey]
            for other in X_KEYS:
                okey = _axis_key(row, other)
                if other != axis and okey and okey != xkey and _number(row[okey]) is not None:
                    parts.append(f"{other}={row[okey]}")
            for yname, y in _y_values(row).items():
                label = " / ".join(parts + ([yname] if yname else []))
                out.setdefault(label, {})[x] = y
    return {k: sorted(v.items()) for k, v in out.items() if len(v) >= 2}


def full_vs_dynamic(results: dict[str, list[dict]]) -> list[tuple[str, float]]:
    """[(label, p50 ms)] of rows that name a full-frame or a dynamic-region render."""
    bars = []
    for scenario, rows in results.items():
        for row in rows:
            mode = next((str(row[k]) for k in MODE_KEYS if isinstance(row.get(k), str) and _MODE.search(row[k])), None)
            ys = _y_values(row)
            if mode and len(ys) == 1:
                extra = [f"{row[k]}" for k in ("gaussians", "resolution", "backend") if k in row]
                bars.append((" / ".join([scenario, mode, *extra]), next(iter(ys.values()))))
    kinds = {("dynamic" in label.lower()) for label, _ in bars}
    return bars if kinds == {True, False} else []


def _line_plot(series: dict, title: str, xlabel: str, path: Path, logx: bool = False) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for label, pts in sorted(series.items()):
        xs, ys = zip(*pts, strict=True)
        ax.plot(xs, ys, marker="o", label=label)
    if logx:
        ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("p50 per frame / call (ms, log)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _bar_plot(bars: list[tuple[str, float]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.45 * len(bars)))
    labels, values = zip(*bars, strict=True)
    colours = ["tab:orange" if "dynamic" in s.lower() else "tab:blue" for s in labels]
    ax.barh(range(len(bars)), values, color=colours)
    ax.set_yticks(range(len(bars)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("p50 (ms)")
    ax.set_title("full-frame vs dynamic-region rendering")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def draw_all(out_dir: Path) -> list[Path]:
    """Draw every plot the results in ``out_dir`` allow; return the PNG paths written."""
    out_dir = Path(out_dir)
    results = load_results(out_dir)
    if not results:
        log.warning("no benchmark results (*.json) in %s: nothing to plot", out_dir)
        return []
    written = []
    specs = (("gaussians", "Gaussian count", "frame time vs Gaussian count", True),
             ("resolution", "resolution (px, width)", "frame time vs resolution", False),
             ("sessions", "concurrent sessions", "frame time vs concurrent sessions", False))
    for axis, xlabel, title, logx in specs:
        series = curves(results, axis)
        if series:
            written.append(_line_plot(series, title, xlabel, out_dir / f"scaling_{axis}.png", logx))
        else:
            log.info("no %s scaling rows in %s (scenarios: %s)", axis, out_dir, ", ".join(results))
    bars = full_vs_dynamic(results)
    if bars:
        written.append(_bar_plot(bars, out_dir / "full_vs_dynamic.png"))
    return written


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="a benchmark results folder")
    args = parser.parse_args(argv)
    for path in draw_all(args.out_dir):
        print(f"plot: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
