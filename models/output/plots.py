"""Figures of a plan and of a target sweep, as PNG files.

* GPU map: one bar per GPU, stacked by model, with the memory of each shard (GB)
  on one panel and its MPS compute share (%) on the other, against the GPU's
  capacity (constraints (3) and (4) of SPEC section 1). With GPU types (SPEC
  4.4) the GPUs are grouped by type, in their numbering, each group with its
  own memory capacity and the type under each GPU's number.
* Latency curves: per deployed model, its profiled curve at its option (the
  points and the linear interpolation `latency_ms` uses), the operating point
  (load, TTFT), the capacity r_K, the headroom line (1 - headroom) r_K when the
  instance has headroom (SPEC 4.1) and, for reference, the mean-TTFT target (the
  target bounds the mean over models, not each model's TTFT).
* Frontier: quality against the mean-TTFT target, one line per method
  (`models/analysis/sweep.py`).
* Cost frontier: the least hourly cost of the GPUs in use against the quality
  required, each point labelled with its GPU mix (`models/analysis/cost_frontier.py`).

Figures are built on `matplotlib.figure.Figure` directly, without pyplot, so
no global state or display is involved; PNGs are rendered by the Agg backend.
A model has the same color in every figure.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from models.methods.registry import BASELINES
from models.problem.files import OutputError, slug
from models.problem.instance import Instance, Option
from models.problem.latency import latency_ms
from models.problem.plan import Plan

DPI = 100
CURVE_SAMPLES = 200  # loads at which the interpolated curve is drawn
MIN_LABELLED_FRACTION = 0.07  # a bar segment gets its number when it is at least this part of the capacity
TARGET_COLOR = "tab:red"
HEADROOM_COLOR = "tab:orange"
FRONTIER_LAYERS = {"exact": 2, "heuristic": 4}  # matplotlib zorder; other methods at 3
METHOD_STYLES = {"exact": ("black", "o"), "heuristic": ("tab:blue", "s"), "equal-split": ("tab:orange", "^"),
                 "size-proportional": ("tab:green", "v"), "isolated": ("tab:purple", "D")}


def model_colors(instance: Instance) -> dict[str, tuple]:
    """One color per model, by its position in the instance."""
    palette = colormaps["tab10"]
    return {name: palette(k % palette.N) for k, name in enumerate(instance.model_names)}


def save(figure: Figure, path: Path) -> Path:
    """The figure as PNG; `OutputError` naming the file if it cannot be written."""
    try:
        figure.savefig(path, dpi=DPI)
    except OSError as err:
        raise OutputError(f"{path}: {err.strerror or err}") from None
    return path


def write_plots(instance: Instance, plan: Plan, folder: str | Path) -> list[Path]:
    """`<instance>-<method>-gpu-map.png` and `<instance>-<method>-latency.png` in `folder` (created if needed;
    the instance's name made safe for a file name)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{slug(plan.instance)}-{plan.method}"
    return [save(plot_gpu_map(instance, plan), folder / f"{stem}-gpu-map.png"),
            save(plot_latency(instance, plan), folder / f"{stem}-latency.png")]


# ---------------------------------------------------------------- GPU map


def deployed(plan: Plan) -> pd.DataFrame:
    return plan.models[plan.models.deployed.astype(bool)]


def option_label(row) -> str:
    on = f"{row.gpu_type}, " if getattr(row, "gpu_type", None) else ""
    return f"{on}tp{int(row.tp)}, MPS {int(row.mps_pct)}%"


def plot_gpu_map(instance: Instance, plan: Plan) -> Figure:
    """Per GPU, the memory (GB) and MPS share (%) of the shards on it, stacked by model."""
    colors = model_colors(instance)
    by_name = {model.name: model for model in instance.models}
    figure = Figure(figsize=(max(7.0, 2.0 + 1.4 * instance.gpu_count), 4.6), layout="constrained")
    memory, compute = figure.subplots(1, 2)
    panels = ((memory, lambda t: t.memory_gb, "memory (GB)",
               lambda row: by_name[row.name].shard_gb(int(row.tp)), "{:.1f}"),
              (compute, lambda t: 100.0, "MPS compute share (%)", lambda row: float(row.mps_pct), "{:.0f}%"))
    for axes, capacity, label, amount, text in panels:
        largest = max(capacity(t) for t in instance.types)
        stack_shards(axes, instance, plan, colors, amount, text, largest)
        draw_type_groups(axes, instance, capacity)
        axes.set_ylim(0, largest * 1.1)
        axes.set_ylabel(label)
        axes.set_xlabel("GPU (type)" if instance.typed else "GPU")
    capacities = ", ".join(f"{t.name} {t.memory_gb:g} GB" for t in instance.gpu_types)
    memory.set_title(f"memory (capacity {capacities or f'{instance.gpu_memory_gb:g} GB'})", fontsize=10)
    compute.set_title("MPS compute share (capacity 100%)", fontsize=10)
    handles = [Patch(color=colors[row.name], label=f"{row.name}: {' + '.join(map(option_label, group))}")
               for row in deployed(plan).itertuples()
               for group in [[r for r in replica_shards(plan) if r.name == row.name]]]
    handles += [Patch(facecolor="none", edgecolor="none", label=f"{row.name}: not deployed")
                for row in plan.models.itertuples() if not row.deployed]
    handles.append(Line2D([], [], color="black", linestyle="--", linewidth=1, label="GPU capacity"))
    figure.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 3), fontsize=9)
    gpu_type = f" ({instance.gpu_type})" if instance.gpu_type else ""
    cost = "" if plan.cost_per_hour is None else f", {plan.cost_per_hour:g} per hour in use"
    figure.suptitle(f"{instance.name}, {plan.method} plan: shards on {instance.gpu_count} GPUs{gpu_type}{cost}")
    return figure


def draw_type_groups(axes, instance: Instance, capacity) -> None:
    """Per GPU type (SPEC 4.4), its GPUs' capacity as a dashed line over its bars, a dotted line between
    types, and tick labels with the GPU's number and type."""
    for gpu_type in instance.types:
        gpus = gpu_type.gpus
        axes.hlines(capacity(gpu_type), gpus.start - 0.5, gpus.stop - 0.5, color="black", linestyle="--",
                    linewidth=1)
        if gpus.start > 0:
            axes.axvline(gpus.start - 0.5, color="gray", linestyle=":", linewidth=1)
    labels = [f"{g}\n{instance.type_of_gpu(g).name}" if instance.typed else str(g) for g in range(instance.gpu_count)]
    axes.set_xticks(range(instance.gpu_count), labels)
    axes.set_xlim(-0.5, instance.gpu_count - 0.5)


class ReplicaShards(NamedTuple):
    """One replica of a deployed model (SPEC 4.5; the model itself when it has one): its option and GPUs."""

    name: str
    tp: int
    mps_pct: int
    gpus: tuple[int, ...]
    gpu_type: str = ""  # SPEC 4.4


def replica_shards(plan: Plan) -> list[ReplicaShards]:
    """Every replica of every deployed model, in model order."""
    return [ReplicaShards(name, option.tp, option.mps_pct, gpus, option.gpu_type)
            for name, options, held in zip(plan.models.name, plan.replicas, plan.replica_placement)
            for option, gpus in zip(options, held)]


def stack_shards(axes, instance: Instance, plan: Plan, colors, amount, text: str, capacity: float) -> None:
    """One bar per GPU, a segment per shard on it in model order (a box per shard of every replica), each
    labelled when tall enough."""
    bottoms = np.zeros(instance.gpu_count)
    for row in replica_shards(plan):
        gpus = list(row.gpus)
        height = amount(row)
        axes.bar(gpus, height, bottom=bottoms[gpus], color=colors[row.name], edgecolor="white", width=0.6)
        if height >= MIN_LABELLED_FRACTION * capacity:
            for g in gpus:
                axes.text(g, bottoms[g] + height / 2, text.format(height), ha="center", va="center", fontsize=8)
        bottoms[gpus] += height


# ---------------------------------------------------------------- latency curves


class LatencyPanel(NamedTuple):
    """A deployed model, or one replica of a model with several (SPEC 4.5, titled NAME #r), at its load."""

    title: str
    model: str
    tp: int
    mps_pct: int
    load_rps: float
    ttft_ms: float
    gpu_type: str = ""  # SPEC 4.4


def latency_panels(plan: Plan) -> list[LatencyPanel]:
    """A panel per deployed model with one replica, and per replica of a model with several."""
    panels = []
    for row in deployed(plan).itertuples():
        parts = getattr(row, "replicas", ()) or ({"tp": row.tp, "mps_pct": row.mps_pct, "load_rps": row.load_rps,
                                                  "ttft_ms": row.ttft_ms},)
        panels += [LatencyPanel(f"{row.name} #{r}" if len(parts) > 1 else row.name, row.name, int(part["tp"]),
                                int(part["mps_pct"]), float(part["load_rps"]), float(part["ttft_ms"]),
                                getattr(row, "gpu_type", "") or "")
                   for r, part in enumerate(parts, start=1)]
    return panels


def plot_latency(instance: Instance, plan: Plan) -> Figure:
    """Per deployed model (per replica, SPEC 4.5), its latency curve at its option, its operating point, its
    capacity and the target."""
    rows = latency_panels(plan)
    columns = min(len(rows), 3)
    lines = math.ceil(len(rows) / columns)
    figure = Figure(figsize=(4.3 * columns, 3.5 * lines + 1.0), layout="constrained")
    grid = np.atleast_1d(figure.subplots(lines, columns, squeeze=False).ravel())
    colors = model_colors(instance)
    by_name = {model.name: model for model in instance.models}
    for axes, row in zip(grid, rows):
        draw_curve(axes, instance, row, by_name[row.model], colors[row.model])
    for axes in grid[len(rows):]:
        axes.set_visible(False)
    handles = [
        Line2D([], [], color="gray", marker="o", label="profiled points, linear interpolation"),
        Line2D([], [], color="black", marker="*", markersize=12, linestyle="none",
               label="operating point (load, TTFT)"),
        Line2D([], [], color="gray", linestyle=":", label="capacity r_K (highest profiled load)"),
        *([Line2D([], [], color=HEADROOM_COLOR, linestyle="-.",
                  label=f"planned at most {1 - instance.headroom:g} r_K"
                        + (" and the load within the tail bounds" if instance.tail_slo_ms else ""))]
          if instance.headroom or instance.tail_slo_ms else []),
        Line2D([], [], color=TARGET_COLOR, linestyle="--",
               label=f"target {instance.slo_mean_ttft_ms:g} ms on the mean TTFT over models (reference)"),
    ]
    overloaded = not math.isfinite(plan.mean_ttft_ms)
    if overloaded:
        handles.append(Line2D([], [], color="black", label="load beyond capacity: TTFT unbounded"))
    figure.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=9)
    mean = "unbounded" if overloaded else f"{plan.mean_ttft_ms:.1f} ms"
    figure.suptitle(f"{instance.name}, {plan.method} plan: latency at {instance.arrival_rate_rps:g} requests/s; "
                    f"mean TTFT {mean}, target {instance.slo_mean_ttft_ms:g} ms")
    return figure


def draw_curve(axes, instance: Instance, row: LatencyPanel, model, color) -> None:
    curve = instance.curve(model, Option(int(row.tp), int(row.mps_pct), row.gpu_type))
    loads = np.linspace(0.0, curve.max_rate_rps, CURVE_SAMPLES)
    axes.plot(loads, [latency_ms(curve, load) for load in loads], color=color, linewidth=1.5)
    axes.plot(curve.rates_rps, curve.ttfts_ms, color=color, marker="o", markersize=4, linestyle="none")
    axes.axvline(curve.max_rate_rps, color="gray", linestyle=":")
    if instance.headroom or instance.tail_slo_ms:
        axes.axvline(instance.capacity_rps(curve), color=HEADROOM_COLOR, linestyle="-.")
    axes.axhline(instance.slo_mean_ttft_ms, color=TARGET_COLOR, linestyle="--", linewidth=1)
    top = max(max(curve.ttfts_ms), instance.slo_mean_ttft_ms)
    if math.isfinite(row.ttft_ms):
        axes.plot(row.load_rps, row.ttft_ms, color="black", marker="*", markersize=12, linestyle="none")
        point = f"{row.load_rps:.2f} req/s, {row.ttft_ms:.1f} ms"
    else:
        axes.axvline(row.load_rps, color="black")
        point = f"{row.load_rps:.2f} req/s: beyond capacity"
    axes.set_xlim(0, max(curve.max_rate_rps, row.load_rps) * 1.05)
    axes.set_ylim(0, top * 1.1)
    axes.set_title(f"{row.title} ({option_label(row)})\n{point}", fontsize=10)
    axes.set_xlabel("load (requests/s)")
    axes.set_ylabel("mean TTFT (ms)")
    axes.grid(alpha=0.3)


# ---------------------------------------------------------------- frontier


def plot_frontier(table: pd.DataFrame, qualities: pd.DataFrame, condition: str = "",
                  cut: pd.DataFrame | None = None) -> Figure:
    """Quality against the target per method (`qualities`: targets by methods), with the latency-free bound;
    `condition` (the sweep's group, when it has several) goes under the title; the plans cut by a time limit
    (`cut`, true where so, shaped as `qualities`; `models.analysis.sweep.time_limited`) drawn hollow.

    `exact` is drawn wide and underneath, baselines dashed above it and `heuristic` on top, so that
    methods with the same quality stay visible."""
    figure = Figure(figsize=(7.5, 5.4), layout="constrained")
    axes = figure.subplots()
    for method in qualities.columns:
        color, marker = METHOD_STYLES.get(method, ("gray", "x"))
        wide = method == "exact"
        label = method if qualities[method].notna().any() else f"{method} (no plan at any target)"
        axes.plot(qualities.index, qualities[method], color=color, marker=marker, label=label,
                  linewidth=3.5 if wide else 1.2, markersize=8 if wide else 4, alpha=0.45 if wide else 1.0,
                  linestyle="--" if method in BASELINES else "-", zorder=FRONTIER_LAYERS.get(method, 3))
    if cut is not None:
        mark_time_limited(axes, qualities, cut)
    bound = table.quality_best_model.iloc[0]
    axes.axhline(bound, color="gray", linestyle="--", linewidth=1,
                 label=f"every prompt to its best model, latency ignored ({bound:.4f})")
    shade_no_plan(axes, qualities)
    axes.set_xlabel("mean-TTFT target (ms)")
    axes.set_ylabel("mean predicted quality Q")
    axes.grid(alpha=0.3)
    figure.legend(loc="outside lower center", ncols=2, fontsize=9)
    figure.suptitle(f"{table.instance.iloc[0]}: quality against the mean-TTFT target"
                    + (f"\n{condition}" if condition else ""))
    return figure


def mark_time_limited(axes, qualities: pd.DataFrame, cut: pd.DataFrame) -> None:
    """A hollow marker over each plan cut by a time limit, and one legend entry for them all."""
    for method in qualities.columns:
        color, marker = METHOD_STYLES.get(method, ("gray", "x"))
        points = qualities[method][cut[method]]
        axes.plot(points.index, points, color=color, marker=marker, markerfacecolor="white", markersize=9,
                  linestyle="none", zorder=5)
    if cut.to_numpy().any():
        axes.plot([], [], color="gray", marker="o", markerfacecolor="white", linestyle="none",
                  label="time limit (not proven)")


def shade_no_plan(axes, qualities: pd.DataFrame) -> None:
    """Gray over the lowest targets where no method has a plan."""
    any_plan = qualities.notna().any(axis=1).to_numpy()
    targets = qualities.index.to_numpy(dtype=float)
    if any_plan.all():
        return
    last = len(targets) - 1 if not any_plan.any() else int(np.argmax(any_plan)) - 1
    if last < 0:
        return
    axes.axvspan(targets[0], targets[last], facecolor="0.85", edgecolor="0.6",
                 label=f"no plan (targets up to {targets[last]:g} ms)")


# ---------------------------------------------------------------- cost frontier


def plot_cost_frontier(table: pd.DataFrame) -> Figure:
    """Least cost per hour against the quality required, each point labelled with its GPU mix; qualities with
    no plan marked at the bottom. The least cost does not decrease with the quality, so a point's cost
    reaches every quality between the point before and it (the step)."""
    figure = Figure(figsize=(7.5, 5.0), layout="constrained")
    axes = figure.subplots()
    found = table[table.cost_per_hour.notna()]
    mix = [column for column in table.columns if column.startswith("gpus_")]
    axes.step(found.min_quality, found.cost_per_hour, where="pre", color="black", marker="o",
              label="least cost of the GPUs in use (exact)")
    for row in found.to_dict("records"):  # GPU type names need not be identifiers
        label = ", ".join(f"{int(row[c])} {c.removeprefix('gpus_')}" for c in mix if row[c])
        axes.annotate(label, (row["min_quality"], row["cost_per_hour"]), textcoords="offset points",
                      xytext=(0, 6), ha="center", fontsize=8)
    missing = table[table.cost_per_hour.isna()]
    if len(missing):
        axes.plot(missing.min_quality, np.zeros(len(missing)), color=TARGET_COLOR, marker="x", linestyle="none",
                  clip_on=False, label="no plan reaches this quality")
    axes.set_xlabel("least mean predicted quality required")
    axes.set_ylabel("cost per hour of the GPUs in use")
    axes.set_ylim(bottom=0, top=max(found.cost_per_hour.max() * 1.2, 1.0) if len(found) else 1.0)
    axes.grid(alpha=0.3)
    figure.legend(loc="outside lower center", ncols=2, fontsize=9)
    figure.suptitle(f"{table.instance.iloc[0]}: the cheapest GPUs that reach each quality")
    return figure
