"""Vega-Lite specs of the report's charts (data inlined in each spec; vega-embed draws them).

Each function returns ``None`` when there is nothing to draw, so the page leaves the chart out.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from thor_cli.show.html.assemble import Report

SCHEMA = "https://vega.github.io/schema/vega-lite/v6.json"  # an id only: vega-embed never fetches it
ACCURACY = [("avg@k", "avg@k"), ("pass@k", "pass@k"), ("maj@k", "maj@k"), ("best-of-N (cells)", "best@k_cells")]
# the training metrics worth a curve, in this order, when a metrics file has them
CURVES = ["loss", "reward_mean", "accuracy", "mean_token_accuracy", "cell_success", "tool_calls_mean",
          "length_mean", "entropy", "grad_norm", "approx_kl", "learning_rate"]
MAX_CURVES = 9


def _spec(data: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {"$schema": SCHEMA, "data": {"values": data}, **spec}


# vega's tableau10, given explicitly so that a label keeps its colour in charts that show only some runs
PALETTE = ["#4c78a8", "#f58518", "#e45756", "#72b7b2", "#54a24b", "#eeca3b", "#b279a2", "#ff9da6", "#9d755d",
           "#bab0ac"]


def _run_color(rep: Report, data: list[dict[str, Any]]) -> dict[str, Any]:
    """One colour per run label across every chart (an eval run ``rl`` and the metrics of ``rl`` too);
    the legend lists the labels this chart has."""
    labels = list(dict.fromkeys([r.label for r in rep.runs] + list(rep.metrics)))
    present = {d["run"] for d in data}
    domain = [x for x in labels if x in present]
    return {"field": "run", "type": "nominal", "title": "run",
            "scale": {"domain": domain, "range": [PALETTE[labels.index(x) % len(PALETTE)] for x in domain]}}


def _bar_px(rep: Report) -> int:
    """Pixels per bar when runs stand side by side: many runs still fit on the screen."""
    return max(6, min(14, 90 // max(1, len(rep.runs))))


def accuracy(rep: Report) -> dict[str, Any] | None:
    """avg@k, pass@k, maj@k and best-of-N per benchmark, runs side by side."""
    data = [{"run": r.label, "benchmark": b, "metric": name, "value": m[key]}
            for r in rep.runs for b, m in ((r.summary or {}).get("benchmarks") or {}).items()
            for name, key in ACCURACY if m.get(key) is not None]
    if not data:
        return None
    bar = _bar_px(rep)
    wide = len(rep.runs) * len({d["benchmark"] for d in data}) * bar > 250
    return _spec(data, facet={"field": "metric", "type": "nominal", "title": None, "sort": [n for n, _ in ACCURACY]},
                 columns=2 if wide else 4,
                 spec={"width": {"step": bar}, "height": 180, "mark": {"type": "bar", "tooltip": True},
                       "encoding": {"x": {"field": "benchmark", "type": "nominal", "title": None},
                                    "xOffset": {"field": "run", "type": "nominal"},
                                    "y": {"field": "value", "type": "quantitative", "title": "accuracy",
                                          "axis": {"format": ".0%"}, "scale": {"domain": [0, 1]}},
                                    "color": _run_color(rep, data)}})


def training(rep: Report) -> dict[str, Any] | None:
    """Curves of the training metrics per step (one panel per metric, one line per run)."""
    present = [k for k in CURVES if any(k in row for rows in rep.metrics.values() for row in rows)]
    keys = present[:MAX_CURVES]
    data = [{"run": label, "step": row["step"], "metric": k, "value": row[k]}
            for label, rows in rep.metrics.items() for row in rows for k in keys if k in row and "step" in row]
    if not data:
        return None
    return _spec(data, facet={"field": "metric", "type": "nominal", "title": None, "sort": keys}, columns=3,
                 resolve={"scale": {"y": "independent"}},
                 spec={"width": 260, "height": 150, "mark": {"type": "line", "point": True, "tooltip": True},
                       "encoding": {"x": {"field": "step", "type": "quantitative"},
                                    "y": {"field": "value", "type": "quantitative", "title": None,
                                          "scale": {"zero": False}},
                                    "color": _run_color(rep, data)}})


def tool_calls(rep: Report) -> dict[str, Any] | None:
    """Share of trajectories by number of tool calls, per run."""
    data = []
    for r in rep.runs:
        hist = (r.stats or {}).get("tool_calls") or {}
        total = sum(hist.values())
        data += [{"run": r.label, "calls": int(c), "share": n / total, "trajectories": n} for c, n in hist.items()]
    if not data:
        return None
    return _spec(data, mark={"type": "bar", "tooltip": True}, width={"step": _bar_px(rep)}, height=200,
                 encoding={"x": {"field": "calls", "type": "ordinal", "title": "tool calls per trajectory"},
                           "xOffset": {"field": "run", "type": "nominal"},
                           "y": {"field": "share", "type": "quantitative", "title": "trajectories",
                                 "axis": {"format": ".0%"}},
                           "color": _run_color(rep, data)})


def cell_errors(rep: Report) -> dict[str, Any] | None:
    """Failed cells by error type (exception name or exec status), per run."""
    data = [{"run": r.label, "error": e, "cells": n}
            for r in rep.runs for e, n in ((r.stats or {}).get("cell_errors") or {}).items()]
    if not data:
        return None
    return _spec(data, mark={"type": "bar", "tooltip": True}, height={"step": _bar_px(rep)}, width=400,
                 encoding={"y": {"field": "error", "type": "nominal", "title": None, "sort": "-x"},
                           "yOffset": {"field": "run", "type": "nominal"},
                           "x": {"field": "cells", "type": "quantitative", "title": "failed cells"},
                           "color": _run_color(rep, data)})


def lengths(rep: Report, bins: int = 30) -> dict[str, Any] | None:
    """Completion lengths (tokens), binned here so a 10,000-record run stays a few dozen points."""
    values = [n for r in rep.runs for n in r.lengths if n > 0]
    if not values:
        return None
    step = max(1, -(-max(values) // bins))  # ceil: every length lands in one of `bins` bins
    data = []
    for r in rep.runs:
        counts = Counter(n // step for n in r.lengths if n > 0)
        total = sum(counts.values())
        data += [{"run": r.label, "tokens": b * step, "share": c / total} for b, c in sorted(counts.items())]
    return _spec(data, mark={"type": "line", "point": True, "interpolate": "step-after", "tooltip": True},
                 encoding={"x": {"field": "tokens", "type": "quantitative", "title": "completion tokens"},
                           "y": {"field": "share", "type": "quantitative", "title": "trajectories",
                                 "axis": {"format": ".0%"}},
                           "color": _run_color(rep, data)})


def funnel(summary: dict[str, Any]) -> dict[str, Any] | None:
    """Records left after each enabled filter, in the order they ran."""
    rows = [r for r in summary.get("funnel") or [] if r.get("enabled", True)]
    if not rows:
        return None
    data = [{"filter": "read", "left": summary.get("read", rows[0].get("in", 0)), "removed": 0, "i": 0}]
    data += [{"filter": r["filter"], "left": r.get("out", 0), "removed": r.get("removed", 0), "i": i + 1}
             for i, r in enumerate(rows)]
    return _spec(data, mark={"type": "bar", "tooltip": True}, height=200,
                 encoding={"x": {"field": "filter", "type": "nominal", "sort": {"field": "i"}, "title": None},
                           "y": {"field": "left", "type": "quantitative", "title": "records left"}})


def all_charts(rep: Report) -> list[dict[str, Any]]:
    """[{id, title, spec}] for every chart with data, in page order."""
    out: list[dict[str, Any]] = []
    for cid, title, spec in (("chart-accuracy", "Accuracy per benchmark", accuracy(rep)),
                             ("chart-training", "Training curves", training(rep)),
                             ("chart-tools", "Tool calls per trajectory", tool_calls(rep)),
                             ("chart-errors", "Failed cells by error type", cell_errors(rep)),
                             ("chart-lengths", "Completion lengths", lengths(rep))):
        if spec is not None:
            out.append({"id": cid, "title": title, "spec": spec})
    for i, (label, summary) in enumerate(rep.funnels.items()):
        spec = funnel(summary)
        if spec is not None:
            out.append({"id": f"chart-funnel-{i}", "title": f"Filter funnel: {label}", "spec": spec})
    return out
