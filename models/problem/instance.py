"""Planning instances (SPEC section 2): reading a folder, validating it, and the
frozen `Instance` every solver and the evaluator take.

Reading and validation are separate steps. `read_instance` parses the files;
each `check_*` function tests one rule of the SPEC and raises `InputError`
with a one-line message naming the file, the row or field, and what is wrong.
`load_instance` runs both and builds the `Instance`.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

import numpy as np
import pandas as pd

PROFILE_COLUMNS = ("model", "tp", "mps_pct", "rate_rps", "mean_ttft_ms")


class InputError(ValueError):
    """Bad instance input. Its message is one line: file, row or field, and what is wrong."""


@dataclass(frozen=True)
class Option:
    """A way to deploy a model: tensor-parallel degree and MPS compute share (percent)."""

    tp: int
    mps_pct: int

    def __str__(self) -> str:
        return f"tp{self.tp}/mps{self.mps_pct}"

    @property
    def compute_pct(self) -> int:
        """Total compute share over the option's shards, in percent of one GPU: tp x mps_pct."""
        return self.tp * self.mps_pct


@dataclass(frozen=True)
class Model:
    """One LLM: fp16 weights split over its `tp` shards, plus a KV-cache reserve per shard."""

    name: str
    weights_gb: float
    kv_cache_gb: float
    required: bool = True
    checkpoint: str = ""  # what a server loads (a model id or a path); SPEC 4.2, default the name

    @property
    def served_checkpoint(self) -> str:
        return self.checkpoint or self.name

    def shard_gb(self, tp: int) -> float:
        """Memory one shard takes on its GPU at degree `tp` (SPEC constraint 3)."""
        return self.weights_gb / tp + self.kv_cache_gb


@dataclass(frozen=True)
class Curve:
    """Profiled mean TTFT (ms) at increasing offered loads (requests/s) for one model and option."""

    rates_rps: tuple[float, ...]
    ttfts_ms: tuple[float, ...]

    @property
    def max_rate_rps(self) -> float:
        """The highest load the option sustains, r_K."""
        return self.rates_rps[-1]


@dataclass(frozen=True, eq=False)
class Instance:
    """A validated planning instance. `scores[x, i]` is prompt x's predicted quality on `models[i]`."""

    name: str
    description: str
    folder: Path
    scores_path: Path
    gpu_count: int
    gpu_memory_gb: float
    gpu_type: str
    arrival_rate_rps: float
    slo_mean_ttft_ms: float
    tp_options: tuple[int, ...]
    mps_options: tuple[int, ...]
    models: tuple[Model, ...]
    curves: Mapping[tuple[str, Option], Curve]
    prompt_ids: tuple[str, ...]
    scores: np.ndarray = field(repr=False)
    headroom: float = 0.0  # SPEC 4.1: no model is planned above (1 - headroom) r_K

    @property
    def model_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.models)

    @property
    def prompt_count(self) -> int:
        return len(self.prompt_ids)

    def options(self, model: Model) -> tuple[Option, ...]:
        """Options with a latency curve whose shards fit an empty GPU, in (tp, mps) order."""
        return tuple(
            option
            for option in self.setup_options()
            if (model.name, option) in self.curves
            and option.tp <= self.gpu_count
            and model.shard_gb(option.tp) <= self.gpu_memory_gb
        )

    def setup_options(self) -> tuple[Option, ...]:
        """Every (tp, mps_pct) pair that `setup_options` allows."""
        return tuple(Option(tp, mps) for tp in self.tp_options for mps in self.mps_options)

    def curve(self, model: Model, option: Option) -> Curve:
        return self.curves[(model.name, option)]

    def capacity_rps(self, curve: Curve) -> float:
        """The most load a model at this curve's option is planned for: (1 - headroom) r_K (SPEC 4.1)."""
        return (1 - self.headroom) * curve.max_rate_rps


# ---------------------------------------------------------------- reading


@dataclass(frozen=True)
class RawInstance:
    """The files of an instance folder, parsed but not yet validated."""

    folder: Path
    toml_path: Path
    config: dict
    profiles_path: Path
    profiles: pd.DataFrame
    scores_path: Path
    scores: pd.DataFrame


def read_instance(folder: str | Path) -> RawInstance:
    """Parse `instance.toml` and the CSV files it names; all values stay strings until checked."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not an instance folder (no such directory)")
    toml_path = folder / "instance.toml"
    config = read_toml(toml_path)
    files = require_table(config, "files", toml_path)
    profiles_path = folder / require_str(files, "profiles", toml_path, "files.profiles")
    scores_path = folder / require_str(files, "scores", toml_path, "files.scores")
    return RawInstance(
        folder=folder,
        toml_path=toml_path,
        config=config,
        profiles_path=profiles_path,
        profiles=read_csv(profiles_path),
        scores_path=scores_path,
        scores=read_csv(scores_path),
    )


def read_toml(path: Path) -> dict:
    check_file_exists(path)
    try:
        return tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: not valid TOML: {err}") from None


def read_csv(path: Path) -> pd.DataFrame:
    check_file_exists(path)
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: not a readable CSV file: {str(err).strip()}") from None
    table.columns = [str(c).strip() for c in table.columns]
    return table


def check_file_exists(path: Path) -> None:
    if not path.is_file():
        raise InputError(f"{path}: file is missing")


# ---------------------------------------------------------------- TOML fields


def require_table(config: dict, key: str, path: Path) -> dict:
    value = config.get(key)
    if not isinstance(value, dict):
        raise InputError(f"{path}: [{key}]: table is missing")
    return value


def require_str(table: dict, key: str, path: Path, where: str) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{path}: field '{where}': missing or not a non-empty string")
    return value


def require_number(table: dict, key: str, path: Path, where: str, *, positive: bool = True) -> float:
    value = table.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"{path}: field '{where}': missing or not a number")
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        kind = "positive" if positive else "non-negative"
        raise InputError(f"{path}: field '{where}': {value} is not a {kind} finite number")
    return float(value)


def optional_headroom(workload: dict, path: Path) -> float:
    """`workload.headroom` (SPEC 4.1): a fraction in [0, 1), 0 when absent."""
    if "headroom" not in workload:
        return 0.0
    value = workload["headroom"]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise InputError(f"{path}: field 'workload.headroom': {value!r} is not a fraction in [0, 1)")
    return float(value)


def require_int(table: dict, key: str, path: Path, where: str) -> int:
    value = table.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{path}: field '{where}': missing or not an integer")
    if value <= 0:
        raise InputError(f"{path}: field '{where}': {value} is not a positive integer")
    return value


def require_int_list(table: dict, key: str, path: Path, where: str, upper: int | None = None) -> tuple[int, ...]:
    values = table.get(key)
    if not isinstance(values, list) or not values:
        raise InputError(f"{path}: field '{where}': missing or not a non-empty list of integers")
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise InputError(f"{path}: field '{where}': {value!r} is not a positive integer")
        if upper is not None and value > upper:
            raise InputError(f"{path}: field '{where}': {value} is above {upper}")
    if len(set(values)) != len(values):
        raise InputError(f"{path}: field '{where}': duplicate value in {values}")
    return tuple(sorted(values))


def parse_models(config: dict, path: Path) -> tuple[Model, ...]:
    entries = config.get("models")
    if not isinstance(entries, list) or not entries:
        raise InputError(f"{path}: [[models]]: no models are listed")
    models = []
    for k, entry in enumerate(entries):
        where = f"models[{k}]"
        if not isinstance(entry, dict):
            raise InputError(f"{path}: {where}: not a table")
        name = require_str(entry, "name", path, f"{where}.name")
        required = entry.get("required", True)
        if not isinstance(required, bool):
            raise InputError(f"{path}: field '{where}.required': {required!r} is not true or false")
        checkpoint = require_str(entry, "checkpoint", path, f"{where}.checkpoint") if "checkpoint" in entry else ""
        models.append(
            Model(
                name=name,
                weights_gb=require_number(entry, "weights_gb", path, f"{where}.weights_gb"),
                kv_cache_gb=require_number(entry, "kv_cache_gb", path, f"{where}.kv_cache_gb", positive=False),
                required=required,
                checkpoint=checkpoint,
            )
        )
    check_unique_model_names(models, path)
    return tuple(models)


def check_unique_model_names(models: list[Model], path: Path) -> None:
    seen = set()
    for k, model in enumerate(models):
        if model.name in seen:
            raise InputError(f"{path}: field 'models[{k}].name': model '{model.name}' is listed twice")
        seen.add(model.name)


# ---------------------------------------------------------------- CSV checks


def line_of(row: int) -> int:
    """File line of a data row (line 1 is the header)."""
    return row + 2


def check_columns(table: pd.DataFrame, columns, path: Path) -> None:
    for column in columns:
        if column not in table.columns:
            raise InputError(f"{path}: column '{column}' is missing")


def numeric_column(table: pd.DataFrame, column: str, path: Path, *, integer: bool = False) -> np.ndarray:
    """A column as floats; the first non-numeric, non-finite or negative entry is an error."""
    text = table[column].str.strip()
    values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=float)
    for row in np.flatnonzero(~np.isfinite(values)):
        raise InputError(f"{path}: line {line_of(row)}: column '{column}': {text.iloc[row]!r} is not a number")
    for row in np.flatnonzero(values < 0):
        raise InputError(f"{path}: line {line_of(row)}: column '{column}': {text.iloc[row]} is negative")
    if integer:
        for row in np.flatnonzero(values != np.round(values)):
            raise InputError(f"{path}: line {line_of(row)}: column '{column}': {text.iloc[row]} is not an integer")
    return values


def check_positive(values: np.ndarray, column: str, path: Path) -> None:
    for row in np.flatnonzero(values <= 0):
        raise InputError(f"{path}: line {line_of(row)}: column '{column}': {values[row]:g} is not positive")


def check_known_models(names: pd.Series, models: tuple[Model, ...], path: Path) -> None:
    known = {m.name for m in models}
    for row, name in enumerate(names):
        if name not in known:
            raise InputError(f"{path}: line {line_of(row)}: column 'model': unknown model '{name}'")


def check_no_duplicate_rows(keys: pd.DataFrame, what: str, path: Path) -> None:
    duplicated = keys.duplicated(keep="first").to_numpy()
    for row in np.flatnonzero(duplicated):
        first = int(np.flatnonzero((keys == keys.iloc[row]).all(axis=1).to_numpy())[0])
        raise InputError(f"{path}: line {line_of(row)}: duplicate {what} (first at line {line_of(first)})")


def parse_profiles(raw: RawInstance, models: tuple[Model, ...], tp_options, mps_options) -> dict:
    """Curves keyed by (model name, Option), for options inside `setup_options` only."""
    table, path = raw.profiles, raw.profiles_path
    check_columns(table, PROFILE_COLUMNS, path)
    names = table["model"].str.strip()
    check_known_models(names, models, path)
    tp = numeric_column(table, "tp", path, integer=True)
    mps = numeric_column(table, "mps_pct", path, integer=True)
    rate = numeric_column(table, "rate_rps", path)
    ttft = numeric_column(table, "mean_ttft_ms", path)
    check_positive(tp, "tp", path)
    check_mps_range(mps, path)
    check_positive(rate, "rate_rps", path)
    check_positive(ttft, "mean_ttft_ms", path)
    tidy = pd.DataFrame({"model": names, "tp": tp.astype(int), "mps_pct": mps.astype(int), "rate": rate, "ttft": ttft})
    check_no_duplicate_rows(tidy[["model", "tp", "mps_pct", "rate"]], "profile point (model, tp, mps_pct, rate_rps)", path)
    kept = tidy[tidy.tp.isin(tp_options) & tidy.mps_pct.isin(mps_options)]
    curves = {}
    for (name, tp_k, mps_k), points in kept.groupby(["model", "tp", "mps_pct"], sort=True):
        points = points.sort_values("rate")
        curves[(name, Option(int(tp_k), int(mps_k)))] = Curve(tuple(points.rate), tuple(points.ttft))
    return curves


def check_mps_range(mps: np.ndarray, path: Path) -> None:
    for row in np.flatnonzero((mps < 1) | (mps > 100)):
        raise InputError(f"{path}: line {line_of(row)}: column 'mps_pct': {mps[row]:g} is outside 1..100")


def check_every_model_has_a_curve(models, curves, path: Path) -> None:
    for model in models:
        if not any(name == model.name for name, _ in curves):
            raise InputError(
                f"{path}: model '{model.name}': empty curve (no profile rows for any option in setup_options)"
            )


def check_every_model_fits(instance: Instance, path: Path) -> None:
    for model in instance.models:
        if not instance.options(model):
            profiled = sorted({option.tp for name, option in instance.curves if name == model.name})
            needs = ", ".join(f"tp{tp}: {model.shard_gb(tp):.1f} GB" for tp in profiled)
            raise InputError(
                f"{path}: model '{model.name}': fits on no GPU (a shard of each profiled option needs {needs}; "
                f"GPUs have {instance.gpu_memory_gb:g} GB, and tp can be at most {instance.gpu_count})"
            )


def parse_scores(raw: RawInstance, models: tuple[Model, ...]) -> tuple[tuple[str, ...], np.ndarray]:
    table, path = raw.scores, raw.scores_path
    check_columns(table, ("prompt_id",) + tuple(m.name for m in models), path)
    if table.empty:
        raise InputError(f"{path}: no prompts (the file has a header and no rows)")
    ids = table["prompt_id"].str.strip()
    for row in np.flatnonzero((ids == "").to_numpy()):
        raise InputError(f"{path}: line {line_of(row)}: column 'prompt_id': empty")
    duplicated = ids.duplicated(keep="first").to_numpy()
    for row in np.flatnonzero(duplicated):
        raise InputError(f"{path}: line {line_of(row)}: column 'prompt_id': duplicate prompt '{ids.iloc[row]}'")
    columns = []
    for model in models:
        values = numeric_column(table, model.name, path)
        for row in np.flatnonzero(values > 1):
            raise InputError(f"{path}: line {line_of(row)}: column '{model.name}': {values[row]:g} is above 1")
        columns.append(values)
    scores = np.column_stack(columns)
    scores.flags.writeable = False
    return tuple(ids), scores


# ---------------------------------------------------------------- loading


def load_instance(folder: str | Path) -> Instance:
    """Read and validate an instance folder; raise `InputError` on the first problem."""
    raw = read_instance(folder)
    path = raw.toml_path
    cluster = require_table(raw.config, "cluster", path)
    workload = require_table(raw.config, "workload", path)
    options = require_table(raw.config, "setup_options", path)
    models = parse_models(raw.config, path)
    tp_options = require_int_list(options, "tp", path, "setup_options.tp")
    mps_options = require_int_list(options, "mps_pct", path, "setup_options.mps_pct", upper=100)
    curves = parse_profiles(raw, models, tp_options, mps_options)
    check_every_model_has_a_curve(models, curves, raw.profiles_path)
    prompt_ids, scores = parse_scores(raw, models)
    name = require_str(raw.config, "name", path, "name")
    description = raw.config.get("description", "")
    gpu_type = cluster.get("gpu_type", "")
    instance = Instance(
        name=name,
        description=description if isinstance(description, str) else str(description),
        folder=raw.folder,
        scores_path=raw.scores_path,
        gpu_count=require_int(cluster, "gpu_count", path, "cluster.gpu_count"),
        gpu_memory_gb=require_number(cluster, "gpu_memory_gb", path, "cluster.gpu_memory_gb"),
        gpu_type=gpu_type if isinstance(gpu_type, str) else str(gpu_type),
        arrival_rate_rps=require_number(workload, "arrival_rate_rps", path, "workload.arrival_rate_rps"),
        slo_mean_ttft_ms=require_number(workload, "slo_mean_ttft_ms", path, "workload.slo_mean_ttft_ms"),
        headroom=optional_headroom(workload, path),
        tp_options=tp_options,
        mps_options=mps_options,
        models=models,
        curves=MappingProxyType(curves),
        prompt_ids=prompt_ids,
        scores=scores,
    )
    check_every_model_fits(instance, path)
    return instance
