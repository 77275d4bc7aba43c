"""Scenario planning: solve one instance over a grid of mean-TTFT targets, loads, headrooms and, with GPU
types, GPU counts, with several methods, in this process or on Ray.

A scenario is one solve of one method: the instance as given except for
`slo_mean_ttft_ms = tau`, its arrival rate times a load scale, a headroom
(SPEC 4.1) and, with GPU types (SPEC 4.4), a count of GPUs per type
(`with_gpu_counts`: renumbered type by type, and checked as the file is, so a
count on which a model fits no GPU is an `infeasible` row with the reason, and
one beyond the planner's limits a `refused` row).
The grid is every (GPU counts, load scale, headroom, target, method), in that
nesting order; a scenario's index is its place in the grid. Each scenario
solves the instance's objective (quality, or the cost objective of SPEC 4.4).
The result is a tidy table, one row per scenario, in scenario order:

    instance            the instance's name
    target_ms           the mean-TTFT target tau of this row (ms)
    method              `exact`, `heuristic` or a baseline of `models/methods/baselines.py`
    status              the plan's solver status (SPEC section 3); with no plan: `infeasible`, `time_limit`,
                        `refused` (beyond a method's or the planner's size limits), `rejected` (by the
                        independent evaluator) or `error` (a solver's internal error, or a task that failed)
    quality             the plan's mean predicted quality Q; empty when there is no plan
    mean_ttft_ms        the plan's predicted mean TTFT (ms); empty when there is no plan
    seconds             wall-clock time of the solve (s); empty for a task that failed
    setup               each model's option (`-` when not deployed); empty when there is no plan
    reason              why there is no plan, when there is none
    quality_best_model  Q with every prompt sent to its best model, latency ignored: no plan at any target beats it
    load_scale          the factor the instance's arrival rate is multiplied by in this row
    arrival_rate_rps    the arrival rate of this row (requests/s)
    headroom            the headroom of this row (SPEC 4.1)
    gpu_counts          the GPUs per type of this row, `A100-80GB=2;H100-80GB=1`; empty: the instance's own
    cost_per_hour       only when every GPU type has a cost: the plan's hourly cost of the GPUs holding a shard

With a CSV path, rows stream into the file as they finish (`SweepCsv`): the
file only ever grows in scenario order, whatever order the tasks finish in, and
an interrupted sweep keeps every finished row. `resume` reads such a file and
solves only the scenarios it lacks, and those whose row is an `error` (a lost
worker, say).

`write_sweep` writes the table as CSV and, per (GPU counts, load scale,
headroom), the frontier as PNG (`models/output/plots.py`).

Time limits. A plan cut by a time limit (status `time_limit`) is not proven
optimal: the printed frontier marks its quality with `*`, the figure with a
hollow marker. Such a plan can be worse than a plan found at a smaller target
of the same (scenario group, method), though a plan that meets a target meets
every larger one (the SLO is the only constraint that depends on the target).
`frontier_notes` says so under the frontier ("a plan of the smaller target T is
feasible here and better"); the row's own plan and status are left as solved.
Starting each target from the previous target's plan would need `exact` to
accept a start plan, which it does not.
"""

from __future__ import annotations

import dataclasses
import itertools
from contextlib import closing
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd

from models.analysis.compare import Outcome, run
from models.methods.registry import SOLVING_METHODS, SolveOptions
from models.output.plots import plot_frontier, save
from models.output.report import fmt
from models.problem.files import OutputError, slug, write_text
from models.problem.instance import BeyondLimits, Instance, InputError, with_gpu_counts
from models.problem.plan import has_costs
from models.problem.progress import Progress
from models.problem.setup import describe_setup
from models.problem.tasks import Engine, Failure, run_tasks
from models.problem.tolerances import GAP_FLOOR

COLUMNS = ("instance", "target_ms", "method", "status", "quality", "mean_ttft_ms", "seconds", "setup", "reason",
           "quality_best_model", "load_scale", "arrival_rate_rps", "headroom", "gpu_counts")
COST_COLUMN = "cost_per_hour"  # after COLUMNS, when every GPU type has a cost
TEXT_COLUMNS = ("instance", "method", "status", "setup", "reason", "gpu_counts")
KEY_DIGITS = 9  # grid values are compared rounded to this many decimals, as the command line rounds them
GpuCounts = tuple[tuple[str, int], ...]  # (type, count) in the instance's order; (): the instance's own GPUs


@dataclasses.dataclass(frozen=True)
class Scenario:
    """One solve: the target, load scale, headroom and GPU counts the instance is solved at, and the method."""

    target_ms: float
    load_scale: float
    headroom: float
    method: str
    gpu_counts: GpuCounts = ()

    @property
    def key(self) -> tuple:
        """What identifies the scenario in a CSV row."""
        return scenario_key(self.target_ms, self.load_scale, self.headroom, counts_text(self.gpu_counts), self.method)

    def applied_to(self, instance: Instance) -> Instance:
        """The instance at this scenario; `InputError` when a model fits none of its GPUs (`with_gpu_counts`)."""
        sized = with_gpu_counts(instance, dict(self.gpu_counts)) if self.gpu_counts else instance
        return dataclasses.replace(sized, slo_mean_ttft_ms=self.target_ms, headroom=self.headroom,
                                   arrival_rate_rps=instance.arrival_rate_rps * self.load_scale)

    def label(self) -> str:
        gpus = f", GPUs {counts_text(self.gpu_counts)}" if self.gpu_counts else ""
        return f"{self.target_ms:g} ms, load x{self.load_scale:g}, headroom {self.headroom:g}{gpus}, {self.method}"


def scenario_key(target_ms: float, load_scale: float, headroom: float, gpu_counts: str, method: str) -> tuple:
    """A scenario's key: its grid values rounded to KEY_DIGITS, its GPU counts as written in the CSV."""
    return (round(target_ms, KEY_DIGITS), round(load_scale, KEY_DIGITS), round(headroom, KEY_DIGITS), gpu_counts,
            method)


def counts_text(gpu_counts: GpuCounts) -> str:
    """GPU counts as the CSV writes them: `A100-80GB=2;H100-80GB=1` ("" for the instance's own)."""
    return ";".join(f"{name}={count}" for name, count in gpu_counts)


def gpu_count_grid(instance: Instance, ranges: Sequence[tuple[str, Sequence[int]]]) -> list[GpuCounts]:
    """Every combination of the counts of `ranges` ((type, counts) pairs), the types in the instance's order and
    the others left out (they keep their count); combinations with no GPU at all are left out. ValueError
    (one line) for an untyped instance, an unknown type, a type given twice, or no GPU in any combination."""
    known = [t.name for t in instance.gpu_types]
    if not known:
        raise ValueError(f"{instance.folder}: lists no GPU types (SPEC 4.4); GPU counts need [[cluster.gpu_types]]")
    names = [name for name, _ in ranges]
    for name in names:
        if name not in known:
            raise ValueError(f"unknown GPU type {name!r} (the instance's types: {', '.join(known)})")
        if names.count(name) > 1:
            raise ValueError(f"GPU type {name!r} is given twice")
    given = dict(ranges)
    swept = [name for name in known if name in given]
    others = sum(t.count for t in instance.gpu_types if t.name not in given)
    grid = [tuple(zip(swept, counts)) for counts in itertools.product(*(given[name] for name in swept))
            if others + sum(counts) > 0]
    if not grid:
        raise ValueError("every count is zero: no combination has a GPU")
    return grid


@dataclasses.dataclass(frozen=True)
class SweepInputs:
    """What every scenario's task reads: the instance (shipped once to Ray's object store) and the options."""

    instance: Instance
    options: SolveOptions


def scenario_grid(targets_ms: Sequence[float], methods: Sequence[str], load_scales: Sequence[float],
                  headrooms: Sequence[float], gpu_counts: Sequence[GpuCounts] = ((),)) -> list[Scenario]:
    """Every (GPU counts, load scale, headroom, target, method), in that nesting order."""
    return [Scenario(float(target), float(scale), float(headroom), method, counts)
            for counts, scale, headroom, target, method
            in itertools.product(gpu_counts, load_scales, headrooms, targets_ms, methods)]


def sweep_columns(instance: Instance) -> tuple[str, ...]:
    """The table's columns: COLUMNS, and COST_COLUMN when every GPU type has a cost."""
    return COLUMNS + ((COST_COLUMN,) if has_costs(instance) else ())


def run_sweep(instance: Instance, targets_ms: Sequence[float], methods: Sequence[str] = SOLVING_METHODS,
              time_limit: float | None = None, progress: bool = True, *, load_scales: Sequence[float] = (1.0,),
              headrooms: Sequence[float] | None = None, gpu_counts: Sequence[GpuCounts] = ((),),
              engine: Engine = Engine(), csv_path: Path | None = None, resume: Path | None = None) -> pd.DataFrame:
    """Solve every scenario of the grid; the table of the module docstring.

    Every plan goes through the independent evaluator at its scenario (`models.analysis.compare.run`); a
    method with no plan gives a row with empty quality and the reason, and a task that fails gives an
    `error` row. `headrooms` None: the instance's own; `gpu_counts`: `gpu_count_grid`'s. Rows stream
    into `csv_path` (if given); Ctrl-C stops the run with the finished rows kept there. `resume`: an
    earlier run's CSV whose scenarios are not solved again (`read_done`). Progress (done/total, time left)
    goes to stderr.
    """
    unknown = [name for name in methods if name not in SOLVING_METHODS]
    if unknown:
        raise ValueError(f"sweep methods: unknown {', '.join(unknown)} (known: {', '.join(SOLVING_METHODS)})")
    scenarios = scenario_grid(targets_ms, methods, load_scales,
                              (instance.headroom,) if headrooms is None else headrooms, gpu_counts)
    done = read_done(resume, instance, scenarios) if resume else {}
    todo = [index for index in range(len(scenarios)) if index not in done]
    best_model = float(instance.scores.max(axis=1).mean())
    inputs = SweepInputs(instance, SolveOptions(time_limit=time_limit))
    outcomes = run_tasks(solve_scenario, inputs, [scenarios[i] for i in todo], engine)
    stream = SweepCsv(csv_path, done, sweep_columns(instance))
    try:
        with Progress(len(todo), f"sweep {instance.name}", unit="solve", enabled=progress) as bar, closing(outcomes):
            for position, result in outcomes:
                index = todo[position]
                row = table_row(instance, scenarios[index], result, best_model)
                stream.add(index, row)
                bar.update(note=f"{scenarios[index].label()}: {row['status']}")
    finally:
        stream.close()
    return stream.table()


def solve_scenario(inputs: SweepInputs, scenario: Scenario) -> dict:
    """The task of one scenario (on any engine): its status, quality, mean TTFT, seconds, setup, reason and
    cost; `infeasible` when a model fits none of the scenario's GPUs, `refused` beyond the planner's limits."""
    try:
        at_scenario = scenario.applied_to(inputs.instance)
    except InputError as err:
        status = "refused" if isinstance(err, BeyondLimits) else "infeasible"
        return no_plan(status, f"with GPUs {counts_text(scenario.gpu_counts)}: {err}", 0.0)
    return sweep_row(at_scenario, run(at_scenario, scenario.method, inputs.options))


def table_row(instance: Instance, scenario: Scenario, result: dict | Failure, best_model: float) -> dict:
    """The scenario's row of the table, from its task's result or failure."""
    solved = no_plan("error", result.reason, np.nan) if isinstance(result, Failure) else result
    return {"instance": instance.name, "target_ms": scenario.target_ms, "method": scenario.method, **solved,
            "quality_best_model": best_model, "load_scale": scenario.load_scale,
            "arrival_rate_rps": instance.arrival_rate_rps * scenario.load_scale, "headroom": scenario.headroom,
            "gpu_counts": counts_text(scenario.gpu_counts)}


NO_PLAN_STATUS = {"infeasible": "infeasible", "no plan in time": "time_limit", "refused": "refused",
                  "error": "error"}


def sweep_row(instance: Instance, outcome: Outcome) -> dict:
    """One row's status, quality, mean TTFT, seconds, setup, reason and cost per hour (NaN without costs)."""
    if outcome.plan is None:
        return no_plan(NO_PLAN_STATUS[outcome.status], outcome.reason.split(": ", 1)[1], outcome.seconds)
    if not outcome.evaluator_agrees:
        return no_plan("rejected", "the independent evaluator rejects the plan", outcome.seconds)
    if outcome.refusal:
        return no_plan("routing breaks", outcome.refusal, outcome.seconds)
    plan = outcome.plan
    return {"status": plan.solver.status, "quality": plan.quality, "mean_ttft_ms": plan.mean_ttft_ms,
            "seconds": outcome.seconds, "setup": describe_setup(instance, plan.setup), "reason": "",
            COST_COLUMN: np.nan if plan.cost_per_hour is None else plan.cost_per_hour}


def no_plan(status: str, reason: str, seconds: float) -> dict:
    return {"status": status, "quality": np.nan, "mean_ttft_ms": np.nan, "seconds": seconds, "setup": "",
            "reason": reason, COST_COLUMN: np.nan}


class SweepCsv:
    """The sweep's CSV while it runs.

    It starts with the header and the resumed rows; a new row is appended once every scenario before
    it has its row, so the file grows in scenario order whatever order the tasks finish in. `close`
    rewrites it with every row so far in scenario order (the finished rows of an interrupted sweep
    included). Without a path the rows are only kept in memory.
    """

    def __init__(self, path: Path | None, resumed: dict[int, dict], columns: tuple[str, ...] = COLUMNS):
        self.path, self.rows, self.resumed, self.columns = path, dict(resumed), set(resumed), list(columns)
        self.next = 0  # the first scenario not yet in the file
        self.write_all()
        self.append_prefix()

    def add(self, index: int, row: dict) -> None:
        self.rows[index] = row
        self.append_prefix()

    def append_prefix(self) -> None:
        """Append the new rows of the scenarios from `next` on that have rows, up to the first that has none."""
        new = []
        while self.next in self.rows:
            if self.next not in self.resumed:
                new.append(self.rows[self.next])
            self.next += 1
        if new and self.path is not None:
            try:
                with self.path.open("a") as handle:
                    pd.DataFrame(new, columns=self.columns).to_csv(handle, header=False, index=False)
            except OSError as err:
                raise OutputError(f"{self.path}: {err.strerror or err}") from None

    def table(self) -> pd.DataFrame:
        return pd.DataFrame([self.rows[index] for index in sorted(self.rows)], columns=self.columns)

    def write_all(self) -> None:
        if self.path is not None:
            write_text(self.path, self.table().to_csv(index=False))

    def close(self) -> None:
        self.write_all()


def read_done(path: Path, instance: Instance, scenarios: list[Scenario]) -> dict[int, dict]:
    """The rows of an earlier sweep's CSV by scenario index, but for `error` rows (solved again).

    `InputError` naming the file (and line) if it is not a sweep CSV of this instance, or has a row
    that is no scenario of this grid (a larger grid is fine).
    """
    columns = sweep_columns(instance)
    try:
        frame = pd.read_csv(path, dtype={column: str for column in TEXT_COLUMNS}, keep_default_na=False,
                            na_values={column: [""] for column in columns if column not in TEXT_COLUMNS})
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise InputError(f"{path}: cannot be read as a sweep CSV ({err})") from None
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise InputError(f"{path}: not a sweep CSV of this version: column {', '.join(missing)} missing")
    index_of = {scenario.key: index for index, scenario in enumerate(scenarios)}
    done = {}
    for line, row in enumerate(frame[list(columns)].to_dict("records"), start=2):
        if row["instance"] != instance.name:
            raise InputError(f"{path}: line {line}: instance '{row['instance']}', not '{instance.name}'")
        index = index_of.get(row_key(row, path, line))
        if index is None:
            raise InputError(f"{path}: line {line}: not a scenario of this sweep's grid (target "
                             f"{row['target_ms']} ms, load x{row['load_scale']}, headroom {row['headroom']}, "
                             f"GPUs {row['gpu_counts'] or 'as listed'}, {row['method']})")
        if row["status"] != "error":
            done[index] = row
    return done


def row_key(row: dict, path: Path, line: int) -> tuple:
    """A CSV row's scenario key (Scenario.key)."""
    try:
        return scenario_key(float(row["target_ms"]), float(row["load_scale"]), float(row["headroom"]),
                            row["gpu_counts"], row["method"])
    except (TypeError, ValueError):
        raise InputError(f"{path}: line {line}: target_ms, load_scale and headroom must be numbers") from None


GROUP = ["gpu_counts", "load_scale", "headroom"]  # a frontier per group: every target and method of it


def conditions(table: pd.DataFrame) -> Iterator[tuple[str, pd.DataFrame]]:
    """Per (GPU counts, load scale, headroom) in the table's order: its label and its rows."""
    for (counts, scale, headroom), rows in table.groupby(GROUP, sort=False):
        gpus = f"GPUs {counts}, " if counts else ""
        yield f"{gpus}load x{scale:g} ({rows.arrival_rate_rps.iloc[0]:g} requests/s), headroom {headroom:g}", rows


def frontier(table: pd.DataFrame) -> pd.DataFrame:
    """Quality by target (rows) and method (columns, in the sweep's order) in one group; NaN where there is no
    plan."""
    return by_target(table, "quality")


def time_limited(table: pd.DataFrame) -> pd.DataFrame:
    """Whether the plan at each target (rows) and method (columns) of one group was cut by a time limit."""
    return by_target(table.assign(cut=(table.status == "time_limit") & table.quality.notna()), "cut").astype(bool)


def by_target(table: pd.DataFrame, column: str) -> pd.DataFrame:
    """One column of one group's rows by target (rows) and method (columns, in the sweep's order)."""
    methods = list(dict.fromkeys(table.method))
    return table.pivot(index="target_ms", columns="method", values=column)[methods]


def frontier_notes(table: pd.DataFrame, objective: str = "quality") -> list[str]:
    """For each time-limited plan of one group that a plan of the same method at a smaller target beats (module
    docstring) by more than GAP_FLOOR (relative: what "optimal" means at least), one line naming the best such
    target and its value: quality (higher is better) or, under the cost objective, cost per hour (lower)."""
    value, sign = ("quality", 1) if objective == "quality" else (COST_COLUMN, -1)
    notes = []
    for method, rows in table[table[value].notna()].groupby("method", sort=False):
        rows = rows.sort_values("target_ms", kind="stable")
        scores = sign * rows[value].to_numpy()
        for k in range(1, len(rows)):
            best = int(np.argmax(scores[:k]))
            if rows.status.iloc[k] == "time_limit" and scores[best] > scores[k] + GAP_FLOOR * max(1, abs(scores[k])):
                notes.append(f"{method} at {rows.target_ms.iloc[k]:g} ms (time limit, {value} "
                             f"{rows[value].iloc[k]:.6g}): a plan of the smaller target {rows.target_ms.iloc[best]:g} "
                             f"ms is feasible here and better: {value} {rows[value].iloc[best]:.6g}")
    return notes


def format_frontier(table: pd.DataFrame, objective: str = "quality") -> str:
    """The frontier for people, one per group under its label when there are several: '-' where a method has no
    plan, '*' after a plan cut by a time limit, and the group's `frontier_notes` under it."""
    sections = list(conditions(table))
    texts = [frontier_text(rows, objective) for _, rows in sections]
    if len(sections) == 1:
        return texts[0]
    return "\n\n".join(f"{label}:\n{text}" for (label, _), text in zip(sections, texts))


def frontier_text(table: pd.DataFrame, objective: str) -> str:
    """One group's frontier, its time-limit footnote and its notes."""
    cut = time_limited(table)
    cells = frontier(table).map(lambda quality: fmt(quality, ".6f"))
    lines = [cells.where(~cut, cells + "*").to_string()]
    if cut.to_numpy().any():
        lines.append("* time limit: not proven optimal")
    return "\n".join(lines + [f"note: {note}" for note in frontier_notes(table, objective)])


def sweep_csv_path(folder: str | Path, instance_name: str) -> Path:
    """`<instance>-sweep.csv` in `folder`, the instance's name made safe for a file name."""
    return Path(folder) / f"{slug(instance_name)}-sweep.csv"


def write_sweep(table: pd.DataFrame, folder: str | Path) -> list[Path]:
    """`<instance>-sweep.csv` and the frontier in `folder` (created if needed): `<instance>-frontier.png`, or
    with several groups, `<instance>-frontier[-gpus<counts>]-load<scale>-headroom<headroom>.png` for each."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    name = slug(table.instance.iloc[0])
    paths = [write_text(sweep_csv_path(folder, table.instance.iloc[0]), table.to_csv(index=False))]
    sections = list(conditions(table))
    for label, rows in sections:
        figure = plot_frontier(rows, frontier(rows), "" if len(sections) == 1 else label, time_limited(rows))
        paths.append(save(figure, folder / f"{name}-frontier{'' if len(sections) == 1 else group_suffix(rows)}.png"))
    return paths


def group_suffix(rows: pd.DataFrame) -> str:
    """The file-name part of one group: `[-gpus<counts>]-load<scale>-headroom<headroom>`."""
    counts = rows.gpu_counts.iloc[0]
    gpus = f"-gpus{slug(counts)}" if counts else ""
    return f"{gpus}-load{rows.load_scale.iloc[0]:g}-headroom{rows.headroom.iloc[0]:g}"
