"""The cross-device report: one self-contained static HTML page and a Markdown summary.

``edgevid report [--db DB] --out report.html [--baseline TARGET] [--metric top1]``

The page needs no network to view: CSS is inline and every plot is a PNG
(matplotlib, Agg backend) embedded as a base64 ``data:`` URI; it references no
external resource.  Contents:

* per device: its fingerprint (CPU, ISA flags, memory, OS, accelerators,
  runtime versions), a table of its configurations (variant, target, precision,
  threads, min/p50/p90/p99/mean +- std, clips/s, peak memory, accuracy), an
  accuracy-vs-latency (p50) plot with the Pareto front, a latency plot, and the
  per-target speed-ups: for each variant and thread count, the p50 of
  ``--baseline`` (default onnxruntime, else the first target measured) over
  that of each other target on the same device;
* side by side: p50 of every configuration on every device, and a plot of the
  configurations measured on more than one device.

Predicted figures (``benchmarks.predict``) are shown in italics with a "≈" and
a "predicted" source everywhere, hollow markers in plots, and are never used as
a speed-up baseline.  ``report.md`` beside the HTML holds the summary tables.
"""
from __future__ import annotations

import base64
import html
import io
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from benchmarks.configs import Config, accuracy_text, configurations, resolve_metric
from benchmarks.select import Budget, pareto_front, rank
from benchmarks.store import DeviceRow, Store
from edge.core.errors import BadInput

log = logging.getLogger(__name__)

DEFAULT_BASELINE = "onnxruntime"
MAX_BARS = 40  # configurations in one bar plot
_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:1.6em}h2{border-bottom:2px solid #ddd;padding-bottom:4px;margin-top:2em}h3{margin-top:1.4em}
table{border-collapse:collapse;margin:8px 0 16px;font-size:0.86em}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}th{background:#f0f0f0}
td.l,th.l{text-align:left}tr:nth-child(even){background:#fafafa}
.pred{font-style:italic;color:#8a5a00}.note{color:#555;font-size:0.9em}
img{max-width:100%;border:1px solid #eee;margin:6px 0}
.fp td{text-align:left}.badge{background:#ffe9b3;border-radius:3px;padding:0 4px;font-size:0.85em}
"""


@dataclass(frozen=True)
class DeviceSection:
    device: DeviceRow
    configs: tuple[Config, ...]


def _fmt(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _label(c: Config) -> str:
    return f"{c.variant} {c.target} t{c.threads}"


def _colors(targets: Sequence[str]) -> dict[str, Any]:
    plt = _plt()
    cmap = plt.get_cmap("tab10")
    return {t: cmap(i % 10) for i, t in enumerate(targets)}


def pareto_plot(configs: Sequence[Config], metric: str, title: str) -> str | None:
    """Accuracy vs p50 latency, the Pareto front as a step line; None without accuracy figures."""
    known = [c for c in configs if metric in c.accuracy]
    if not known:
        return None
    plt = _plt()
    colors = _colors(sorted({c.target for c in configs}))
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for c in known:
        ax.scatter(c.stats.p50, c.accuracy[metric], s=40, marker="o",
                   facecolors="none" if c.predicted else colors[c.target], edgecolors=colors[c.target])
        low, high = c.accuracy.get(f"{metric}_low"), c.accuracy.get(f"{metric}_high")
        if low is not None and high is not None:  # a measured top-1: its 95% interval
            ax.errorbar(c.stats.p50, c.accuracy[metric], yerr=[[c.accuracy[metric] - low], [high - c.accuracy[metric]]],
                        color=colors[c.target], alpha=0.35, lw=1, capsize=2)
    front = pareto_front(rank(known, Budget(1e12, "p50"), metric))
    if front:
        ax.step([r.latency for r in front], [r.accuracy for r in front], where="post", color="k", lw=1, alpha=0.6,
                label="Pareto front")
    for t, col in colors.items():
        ax.scatter([], [], color=col, label=t)
    if any(c.predicted for c in known):
        ax.scatter([], [], facecolors="none", edgecolors="k", label="predicted")
    ax.set_xlabel("p50 latency (ms)")
    ax.set_ylabel(metric)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def latency_plot(configs: Sequence[Config], title: str) -> str:
    """p50 (bar) with p90 (whisker) per configuration, fastest first; predictions hatched."""
    plt = _plt()
    shown = sorted(configs, key=lambda c: c.stats.p50)[:MAX_BARS]
    colors = _colors(sorted({c.target for c in configs}))
    fig, ax = plt.subplots(figsize=(9, 0.28 * len(shown) + 1.2))
    y = range(len(shown))
    p50 = [c.stats.p50 for c in shown]
    p90 = [c.stats.p90 if c.stats.p90 is not None else c.stats.p50 for c in shown]
    ax.barh(list(y), p50, xerr=[[0] * len(shown), [max(0.0, b - a) for a, b in zip(p50, p90)]],
            color=[colors[c.target] for c in shown], hatch=None, alpha=0.85)
    for i, c in enumerate(shown):
        if c.predicted:
            ax.barh([i], [c.stats.p50], color="none", edgecolor="k", hatch="//")
    ax.set_yticks(list(y), [_label(c) + (" (predicted)" if c.predicted else "") for c in shown], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("p50 latency (ms), whisker to p90")
    ax.set_title(title + (f" (fastest {MAX_BARS} of {len(configs)})" if len(configs) > MAX_BARS else ""))
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def cross_device_plot(sections: Sequence[DeviceSection]) -> str | None:
    """p50 of configurations measured on more than one device, grouped by configuration."""
    plt = _plt()
    import numpy as np

    keys: dict[tuple[str, str, int], dict[str, Config]] = {}
    for s in sections:
        for c in s.configs:
            keys.setdefault((c.variant, c.target, c.threads), {})[s.device.name] = c
    common = [(k, v) for k, v in keys.items() if len(v) > 1][:MAX_BARS]
    if not common:
        return None
    names = [s.device.name for s in sections]
    fig, ax = plt.subplots(figsize=(10, 0.35 * len(common) * max(1, len(names) / 2) + 1.5))
    h = 0.8 / len(names)
    for j, name in enumerate(names):
        ys = np.arange(len(common)) + j * h
        vals = [v[name].stats.p50 if name in v else 0.0 for _, v in common]
        bars = ax.barh(ys, vals, height=h, label=name)
        for b, (_, v) in zip(bars, common):
            if name in v and v[name].predicted:
                b.set_hatch("//")
    ax.set_yticks(np.arange(len(common)) + 0.4 - h / 2, [f"{k[0]} {k[1]} t{k[2]}" for k, _ in common], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("p50 latency (ms); hatched: predicted")
    ax.legend(fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def speedups(configs: Sequence[Config], baseline: str) -> list[dict[str, Any]]:
    """Per (variant, threads): p50 of the measured ``baseline`` target / p50 of each other target."""
    base = {(c.variant, c.threads): c for c in configs if c.target == baseline and not c.predicted}
    out = []
    for c in sorted(configs, key=lambda c: (c.variant, c.threads, c.target)):
        b = base.get((c.variant, c.threads))
        if b is None or c.target == baseline or c.stats.p50 <= 0:
            continue
        out.append({"variant": c.variant, "threads": c.threads, "target": c.target, "baseline": baseline,
                    "baseline_p50_ms": b.stats.p50, "p50_ms": c.stats.p50, "speedup": b.stats.p50 / c.stats.p50,
                    "predicted": c.predicted})
    return out


def choose_baseline(configs: Sequence[Config], requested: str | None) -> str | None:
    targets = sorted({c.target for c in configs if not c.predicted})
    if requested:
        return requested
    if DEFAULT_BASELINE in targets:
        return DEFAULT_BASELINE
    return targets[0] if targets else None


# ----------------------------------------------------------------------------- HTML

def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], left: int = 1,
           row_class: Sequence[str] | None = None) -> str:
    th = "".join(f'<th class="l">{html.escape(h)}</th>' if i < left else f"<th>{html.escape(h)}</th>"
                 for i, h in enumerate(header))
    body = []
    for r_i, r in enumerate(rows):
        cls = f' class="{row_class[r_i]}"' if row_class and row_class[r_i] else ""
        tds = "".join(f'<td class="l">{html.escape(str(v))}</td>' if i < left else f"<td>{html.escape(str(v))}</td>"
                      for i, v in enumerate(r))
        body.append(f"<tr{cls}>{tds}</tr>")
    return f"<table><thead><tr>{th}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _config_rows(configs: Sequence[Config], metric: str) -> list[list[Any]]:
    rows = []
    for c in configs:
        s = c.stats
        approx = "≈" if c.predicted else ""
        std = "" if c.predicted or s.std is None else f" ± {s.std:.2f}"
        rows.append([c.variant, c.target, c.precision, c.threads, c.source, c.measurements or "-",
                     approx + _fmt(s.min), approx + _fmt(s.p50), approx + _fmt(s.p90), approx + _fmt(s.p99),
                     approx + _fmt(s.mean) + std, approx + _fmt(s.throughput, 1),
                     approx + _fmt(c.peak_mb, 0), accuracy_text(c.accuracy, metric)])
    return rows


CONFIG_HEADER = ("variant", "target", "precision", "threads", "source", "runs pooled", "min ms", "p50 ms", "p90 ms",
                 "p99 ms", "mean ± std ms", "clips/s", "peak MiB", "accuracy")


def _fingerprint_rows(d: DeviceRow) -> list[list[str]]:
    fp = d.fingerprint
    return [["name", d.name], ["device id", d.device_id], ["CPU", f"{fp.cpu_model} ({fp.cpus} logical CPUs)"],
            ["ISA flags", " ".join(fp.isa) or "-"], ["memory", f"{fp.memory_mb} MiB"],
            ["OS", f"{fp.os} {fp.os_release} ({fp.arch})"], ["accelerators", ", ".join(fp.accelerators) or "-"],
            ["board", fp.board or "-"],
            ["runtimes", ", ".join(f"{k} {v}" for k, v in sorted(fp.runtimes.items())) or "-"],
            ["python", fp.python or "-"],
            ["measured", f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime(d.first_seen))} .. "
                         f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime(d.last_seen))} UTC"]]


def build(store: Store, metric: str | None = None, baseline: str | None = None
          ) -> tuple[str, str, dict[str, Any]]:
    """(HTML, Markdown, JSON summary) of every device in the store."""
    sections = [DeviceSection(d, tuple(configurations(store, d, include_predicted=True))) for d in store.devices()]
    sections = [s for s in sections if any(not c.predicted for c in s.configs)]
    if not sections:
        raise BadInput(f"{store.path}: no measurements in DB for any device; nothing to report "
                       "(measure with `edgevid bench` or `edgevid sweep` first)")
    metric = resolve_metric([c for s in sections for c in s.configs], metric)
    n_pred = sum(c.predicted for s in sections for c in s.configs)
    parts = [f"<h1>edgevid latency report</h1><p class='note'>store {html.escape(str(store.path))}, "
             f"{len(sections)} device(s), generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. "
             f"Accuracy: <b>{html.escape(metric)}</b> from the store's accuracy table ('-' = unknown); a measured "
             f"top-1 (the artifact run on labelled held-out clips) shows its 95% interval [low-high] and clip count n. "
             f"Latency per call at batch 1; statistics over every timed call of a configuration's measurements. "
             + (f"<span class='badge'>{n_pred} predicted configuration(s)</span>: figures marked ≈ in "
                "<span class='pred'>italics</span> and hollow/hatched in plots are predictions of "
                "benchmarks.predict, not measurements." if n_pred else "No predicted figures.") + "</p>"]
    md = [f"# edgevid latency report\n\nStore `{store.path}`, {len(sections)} device(s). Accuracy: `{metric}`. "
          + (f"**{n_pred} predicted configuration(s)**, marked ≈ (predicted)." if n_pred else "No predicted figures.")
          + "\n"]
    summary: dict[str, Any] = {"db": str(store.path), "metric": metric, "predicted": n_pred, "devices": []}
    for s in sections:
        d = s.device
        base = choose_baseline(s.configs, baseline)
        parts.append(f"<h2 id='dev-{html.escape(d.device_id)}'>{html.escape(d.name)} "
                     f"<small>[{html.escape(d.device_id)}]</small></h2>")
        parts.append("<h3>Device fingerprint</h3>" + _table(("field", "value"), _fingerprint_rows(d), left=2)
                     .replace("<table>", "<table class='fp'>"))
        parts.append("<h3>Configurations</h3>" + _table(CONFIG_HEADER, _config_rows(s.configs, metric), left=5,
                                                        row_class=["pred" if c.predicted else "" for c in s.configs]))
        plot = pareto_plot(s.configs, metric, f"{d.name}: {metric} vs p50 latency")
        parts.append("<h3>Accuracy vs latency</h3>" + (f"<img alt='accuracy vs latency, {html.escape(d.name)}' "
                                                       f"src='{plot}'>" if plot else
                                                       f"<p class='note'>No {html.escape(metric)} figures for this "
                                                       "device's configurations: no Pareto plot.</p>"))
        parts.append(f"<h3>Latency</h3><img alt='latency, {html.escape(d.name)}' "
                     f"src='{latency_plot(s.configs, d.name + ': latency per configuration')}'>")
        ups = speedups(s.configs, base) if base else []
        parts.append(f"<h3>Speed-up per target (vs {html.escape(base or '-')}, same variant and threads)</h3>"
                     + (_table(("variant", "threads", "target", "baseline p50 ms", "p50 ms", "speed-up", "source"),
                               [[u["variant"], u["threads"], u["target"], _fmt(u["baseline_p50_ms"]),
                                 ("≈" if u["predicted"] else "") + _fmt(u["p50_ms"]), f"{u['speedup']:.2f}x",
                                 "predicted" if u["predicted"] else "measured"] for u in ups], left=1,
                               row_class=["pred" if u["predicted"] else "" for u in ups])
                        if ups else "<p class='note'>No variant measured on the baseline and another target.</p>"))
        md.append(_md_device(s, metric, base, ups))
        summary["devices"].append({"name": d.name, "id": d.device_id, "configurations": len(s.configs),
                                   "predicted": sum(c.predicted for c in s.configs), "baseline": base,
                                   "speedups": ups})
    parts.append("<h2>Side by side</h2>" + _side_by_side(sections))
    plot = cross_device_plot(sections)
    parts.append(f"<img alt='p50 across devices' src='{plot}'>" if plot else
                 "<p class='note'>No configuration is measured on more than one device.</p>")
    md.append(_md_side_by_side(sections))
    page = ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>edgevid latency report</title>"
            f"<style>{_CSS}</style></head><body>{''.join(parts)}</body></html>")
    return page, "\n".join(md), summary


def _side_by_side(sections: Sequence[DeviceSection]) -> str:
    keys: dict[tuple[str, str, str, int], dict[str, Config]] = {}
    for s in sections:
        for c in s.configs:
            keys.setdefault((c.variant, c.target, c.precision, c.threads), {})[s.device.name] = c
    names = [s.device.name for s in sections]
    rows, classes = [], []
    for k in sorted(keys):
        cells = [("≈" if keys[k][n].predicted else "") + _fmt(keys[k][n].stats.p50) if n in keys[k] else "-"
                 for n in names]
        rows.append([*k, *cells])
        classes.append("pred" if any(c.predicted for c in keys[k].values()) else "")
    return ("<p class='note'>p50 latency (ms) of each configuration on each device; ≈ marks a prediction.</p>"
            + _table(("variant", "target", "precision", "threads", *[f"{n} p50 ms" for n in names]), rows, left=3,
                     row_class=classes))


def _md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def _md_device(s: DeviceSection, metric: str, base: str | None, ups: Sequence[dict[str, Any]]) -> str:
    d = s.device
    out = [f"## {d.name} [{d.device_id}]\n", d.fingerprint.summary + "\n",
           _md_table(("variant", "target", "precision", "threads", "source", "p50 ms", "p90 ms", "peak MiB", metric),
                     [[c.variant, c.target, c.precision, c.threads, c.source,
                       ("≈" if c.predicted else "") + _fmt(c.stats.p50), ("≈" if c.predicted else "")
                       + _fmt(c.stats.p90), _fmt(c.peak_mb, 0), accuracy_text(c.accuracy, metric)]
                      for c in s.configs])]
    if ups:
        out += [f"\nSpeed-up vs {base} (p50, same variant and threads):\n",
                _md_table(("variant", "threads", "target", "speed-up", "source"),
                          [[u["variant"], u["threads"], u["target"], f"{u['speedup']:.2f}x",
                            "predicted" if u["predicted"] else "measured"] for u in ups])]
    return "\n".join(out) + "\n"


def _md_side_by_side(sections: Sequence[DeviceSection]) -> str:
    keys: dict[tuple[str, str, int], dict[str, Config]] = {}
    for s in sections:
        for c in s.configs:
            keys.setdefault((c.variant, c.target, c.threads), {})[s.device.name] = c
    names = [s.device.name for s in sections]
    rows = [[*k, *[("≈" if keys[k][n].predicted else "") + _fmt(keys[k][n].stats.p50) if n in keys[k] else "-"
                   for n in names]] for k in sorted(keys)]
    return "## Side by side (p50 ms; ≈ predicted)\n\n" + _md_table(("variant", "target", "threads", *names), rows) + "\n"


def write_report(store: Store, out: str | Path, metric: str | None = None, baseline: str | None = None
                 ) -> dict[str, Any]:
    """Write ``out`` (HTML) and ``report.md`` beside it; returns the summary."""
    out = Path(out)
    if not out.parent.is_dir():
        raise BadInput(f"{out}: folder {out.parent} does not exist")
    if out.suffix.lower() not in (".html", ".htm"):
        raise BadInput(f"{out}: the report is an HTML file (.html)")
    page, md, summary = build(store, metric, baseline)
    md_path = out.with_name("report.md")
    for path, text in ((out, page), (md_path, md)):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    summary.update(html=str(out), markdown=str(md_path), bytes=len(page.encode()))
    return summary
