"""Planning instances (SPEC section 2): reading a folder, validating it, and the
frozen `Instance` every solver and the evaluator take.

Reading and validation are separate steps. `read_instance` parses the files;
each `check_*` function tests one rule of the SPEC and raises `InputError`
with a one-line message naming the file, the line or field, and what is wrong.
`load_instance` runs both, builds the `Instance` and checks the planner's
limits (SPEC section 5).

CSV files are parsed by pandas' C reader: a column whose cells are all numbers
comes back as numbers (no text is kept for it, which keeps large scores files
fast), any other column as text. Line numbers in messages are the file's
physical lines (blank lines and line breaks inside quoted fields count). They
come from a second scan with the `csv` module, as slow as the parse itself,
made only when a message needs one.
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import math
import sys
import time
import tomllib
import warnings
from contextlib import closing
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from types import MappingProxyType
from typing import Iterator, Mapping

import numpy as np
import pandas as pd
from pandas.api.types import is_bool_dtype, is_numeric_dtype
from tqdm import tqdm

from models.problem.tolerances import QUALITY_TOL

PROFILE_COLUMNS = ("model", "tp", "mps_pct", "rate_rps", "mean_ttft_ms")
TAIL_PERCENTILES = ("p95", "p99")  # SPEC 4.6: bound workload.slo_<p>_ttft_ms on column <p>_ttft_ms of the profiles
PROMPT_COLUMN = "prompt_id"


class InputError(ValueError):
    """Bad instance input. Its message is one line: file, row or field, and what is wrong."""


class BeyondLimits(InputError):
    """An instance larger than the planner accepts (SPEC section 5, `check_limits`)."""


@dataclass(frozen=True)
class Option:
    """A way to deploy a model: tensor-parallel degree, MPS compute share (percent) and, with several GPU
    types (SPEC 4.4), the type its shards sit on ("" in an instance without `gpu_types`)."""

    tp: int
    mps_pct: int
    gpu_type: str = ""

    def __str__(self) -> str:
        on = f"{self.gpu_type}/" if self.gpu_type else ""
        return f"{on}tp{self.tp}/mps{self.mps_pct}"

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
    max_replicas: int = 1  # SPEC 4.5: replicas the model may run, each with its own option, GPUs and share

    @property
    def served_checkpoint(self) -> str:
        return self.checkpoint or self.name

    @property
    def slot_names(self) -> tuple[str, ...]:
        """The names of its replica slots (SPEC 4.5): its own name for the first, NAME#r for replica r >= 2."""
        return (self.name,) + tuple(f"{self.name}#{r}" for r in range(2, self.max_replicas + 1))

    def shard_gb(self, tp: int) -> float:
        """Memory one shard takes on its GPU at degree `tp` (SPEC constraint 3)."""
        return self.weights_gb / tp + self.kv_cache_gb


@dataclass(frozen=True)
class Curve:
    """Profiled mean TTFT (ms) at increasing offered loads (requests/s) for one model and option."""

    rates_rps: tuple[float, ...]
    ttfts_ms: tuple[float, ...]
    p95_ttfts_ms: tuple[float, ...] = ()  # SPEC 4.6: the profiled percentiles at the same loads; () if not profiled
    p99_ttfts_ms: tuple[float, ...] = ()

    @property
    def max_rate_rps(self) -> float:
        """The highest load the option sustains, r_K."""
        return self.rates_rps[-1]

    def percentile_ms(self, percentile: str) -> tuple[float, ...]:
        """The profiled TTFT percentile ('p95' or 'p99') at each load; () when the profiles lack its column."""
        return getattr(self, f"{percentile}_ttfts_ms")

    def rate_within(self, percentile: str, bound_ms: float) -> float:
        """The largest load up to which the percentile, interpolated linearly in the load and flat at the first
        point's value below r_1, stays at most `bound_ms` all along (SPEC 4.6): r_K if it never passes it, 0 if
        the first point does. A percentile that falls again after passing the bound is not used beyond it."""
        rates, values = self.rates_rps, self.percentile_ms(percentile)
        if values[0] > bound_ms:
            return 0.0
        for k in range(1, len(rates)):
            if values[k] > bound_ms:  # the first crossing, on segment [r_{k-1}, r_k]
                along = (bound_ms - values[k - 1]) / (values[k] - values[k - 1])
                return rates[k - 1] + along * (rates[k] - rates[k - 1])
        return rates[-1]


@dataclass(frozen=True)
class GpuType:
    """GPUs of one type (SPEC 4.4): numbered first_gpu .. first_gpu + count - 1, type by type in the listed order."""

    name: str
    count: int
    memory_gb: float
    cost_per_hour: float | None = None
    first_gpu: int = 0

    @property
    def gpus(self) -> range:
        return range(self.first_gpu, self.first_gpu + self.count)


OBJECTIVES = ("quality", "cost")


@dataclass(frozen=True)
class Objective:
    """SPEC 4.4: maximize quality (the default), or minimize the hourly cost of the GPUs that hold a shard
    subject to Q >= min_quality."""

    kind: str = "quality"
    min_quality: float | None = None

    def met_by(self, quality: float) -> bool:
        """Whether a plan of this quality meets the objective's constraint: always under the quality objective,
        quality >= min_quality (to QUALITY_TOL, models/problem/tolerances.py) under the cost objective."""
        return self.kind != "cost" or quality >= self.min_quality - QUALITY_TOL * max(1.0, self.min_quality)


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
    tail_slo_ms: Mapping[str, float] = field(default_factory=dict)  # SPEC 4.6: percentile ('p95', 'p99') -> bound
    # SPEC 4.4: the GPU types as listed (empty: one type, gpu_count GPUs of gpu_memory_gb). With types,
    # gpu_count is their total, gpu_memory_gb the largest memory and gpu_type their description.
    gpu_types: tuple[GpuType, ...] = ()
    objective: Objective = Objective()

    @property
    def typed(self) -> bool:
        """Whether the instance lists `gpu_types` (and its plans name each model's type)."""
        return bool(self.gpu_types)

    @property
    def types(self) -> tuple[GpuType, ...]:
        """The GPU types every method iterates: the listed ones, or one unnamed type of the whole cluster."""
        return self.gpu_types or (GpuType("", self.gpu_count, self.gpu_memory_gb),)

    def gpu_type_named(self, name: str) -> GpuType:
        return next(t for t in self.types if t.name == name)

    def type_of_gpu(self, gpu: int) -> GpuType:
        return next(t for t in self.types if gpu in t.gpus)

    @property
    def model_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.models)

    @property
    def prompt_count(self) -> int:
        return len(self.prompt_ids)

    @property
    def has_replicas(self) -> bool:
        """Whether some model may run more than one replica (SPEC 4.5)."""
        return any(model.max_replicas > 1 for model in self.models)

    @property
    def profiled_percentiles(self) -> tuple[str, ...]:
        """The TTFT percentiles ('p95', 'p99') whose columns the profiles have (SPEC 4.6)."""
        return tuple(p for p in TAIL_PERCENTILES if all(curve.percentile_ms(p) for curve in self.curves.values()))

    def one_replica_each(self) -> Instance:
        """The instance with max_replicas = 1 for every model (SPEC 4.5), for the methods that deploy a model
        once."""
        return dataclasses.replace(self, models=tuple(dataclasses.replace(m, max_replicas=1) for m in self.models))

    def options(self, model: Model) -> tuple[Option, ...]:
        """Options with a latency curve whose shards fit an empty GPU of their type and that meet the tail bounds
        at some load (SPEC 4.6), in (type, tp, mps) order."""
        return tuple(
            option
            for gpu_type in self.types
            for option in self.setup_options(gpu_type.name)
            if (model.name, option) in self.curves
            and option.tp <= gpu_type.count
            and model.shard_gb(option.tp) <= gpu_type.memory_gb
            and self.tail_rate_rps(self.curve(model, option)) > 0
        )

    def setup_options(self, gpu_type: str = "") -> tuple[Option, ...]:
        """Every (tp, mps_pct) pair that `setup_options` allows, on the named GPU type."""
        return tuple(Option(tp, mps, gpu_type) for tp in self.tp_options for mps in self.mps_options)

    def curve(self, model: Model, option: Option) -> Curve:
        return self.curves[(model.name, option)]

    def capacity_rps(self, curve: Curve) -> float:
        """The most load a model at this curve's option is planned for: (1 - headroom) r_K (SPEC 4.1), and no
        more than the tail bounds allow (SPEC 4.6)."""
        return min((1 - self.headroom) * curve.max_rate_rps, self.tail_rate_rps(curve))

    def tail_rate_rps(self, curve: Curve) -> float:
        """The largest load within every tail bound (SPEC 4.6, `Curve.rate_within`); infinite with none set, 0
        when the first point breaks one: the option cannot be used."""
        return min((curve.rate_within(p, bound) for p, bound in self.tail_slo_ms.items()), default=math.inf)


# ---------------------------------------------------------------- reading

CHUNK_ROWS = 500_000  # rows pandas parses at a time; progress is reported between chunks
PROGRESS_MIN_BYTES = 20_000_000  # a CSV file larger than this reports progress on stderr while it is read
PROGRESS_EVERY_S = 5.0  # at most one plain progress line per this many seconds


@dataclass(frozen=True, eq=False)
class CsvTable:
    """A CSV file as parsed: its column names (stripped) and one row per record, blank lines skipped.

    A column whose cells are all numbers holds numbers; any other column holds the cells' text.
    """

    path: Path
    header: tuple[str, ...]
    header_line: int
    frame: pd.DataFrame = field(repr=False)

    def column(self, name: str) -> pd.Series:
        """The cells of column `name`, the first column of that name."""
        return self.frame.iloc[:, self.header.index(name)]

    def text(self, name: str) -> np.ndarray:
        """The cells of a text column, stripped."""
        return np.array([cell.strip() for cell in self.column(name).to_numpy(dtype=object)], dtype=object)

    def line_of(self, row: int) -> int:
        """The physical line on which data row `row` (0-based) starts."""
        return int(self.record_lines[row + 1])

    @cached_property
    def record_lines(self) -> np.ndarray:
        """The line on which each record starts, the header's first; scanned when a message first needs it."""
        return np.fromiter((line for line, _ in records(self.path)), dtype=np.int64)


@dataclass(frozen=True)
class RawInstance:
    """The files of an instance folder, parsed but not yet validated."""

    folder: Path
    toml_path: Path
    config: dict
    profiles: CsvTable
    scores: CsvTable


def read_instance(folder: str | Path) -> RawInstance:
    """Parse `instance.toml` and the CSV files it names; CSV values are checked later."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not an instance folder ({'a file' if folder.exists() else 'no such directory'})")
    toml_path = folder / "instance.toml"
    config = read_toml(toml_path)
    check_known_keys(config, toml_path)  # first: a misspelt key is named as such, not as a missing one
    files = require_table(config, "files", toml_path)
    return RawInstance(
        folder=folder,
        toml_path=toml_path,
        config=config,
        profiles=read_csv(folder / require_str(files, "profiles", toml_path, "files.profiles"), ("model", "gpu_type")),
        scores=read_csv(folder / require_str(files, "scores", toml_path, "files.scores"), (PROMPT_COLUMN,)),
    )


def read_toml(path: Path) -> dict:
    """A TOML file's tables; a UTF-8 byte order mark is allowed, as in the CSV files."""
    check_file_exists(path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: not valid TOML: {one_line(err)}") from None


def read_csv(path: Path, text_columns: tuple[str, ...] = ()) -> CsvTable:
    """Parse a CSV file. `text_columns` stay text; any other column is numbers if all its cells are."""
    check_file_exists(path)
    header_line, header = read_header(path)
    frame = parse_records(path, {k: object for k, name in enumerate(header) if name in text_columns})
    return CsvTable(path=path, header=header, header_line=header_line, frame=frame)


def check_file_exists(path: Path) -> None:
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not a file")
    if not path.is_file():
        raise InputError(f"{path}: file is missing")


def records(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line, fields) for each record of a CSV file: the physical line it starts on, and its fields.

    Blank and whitespace-only lines are left out, as pandas skips them; a quoted field may span lines.
    """
    pending: list[int] = []  # the numbers of the lines the record being read has taken

    def non_blank(lines):
        for number, line in enumerate(lines, start=1):
            if line.strip():
                pending.append(number)
                yield line

    limit = csv.field_size_limit(2**31 - 1)  # pandas has no limit on the size of a field; neither has the scan
    try:
        with open(path, newline="", encoding="utf-8-sig") as file:
            for fields in csv.reader(non_blank(file), skipinitialspace=True):
                yield pending[0], fields
                pending.clear()
    finally:
        csv.field_size_limit(limit)


def read_header(path: Path) -> tuple[int, tuple[str, ...]]:
    """The line of a CSV file's header and its column names, stripped."""
    try:
        with closing(records(path)) as scan:
            first = next(scan, None)
    except (UnicodeDecodeError, csv.Error) as err:
        raise InputError(f"{path}: not a readable CSV file: {one_line(err)}") from None
    if first is None:
        raise InputError(f"{path}: empty file (no header line)")
    line, names = first
    return line, tuple(name.strip() for name in names)


def parse_records(path: Path, dtype: dict[int, type]) -> pd.DataFrame:
    """The data rows, by pandas' C reader, `dtype` by column position; a row longer than the header is an error."""
    try:
        with warnings.catch_warnings(), open(path, "rb") as file:
            warnings.simplefilter("error", pd.errors.ParserWarning)  # a first row longer than the header
            warnings.simplefilter("ignore", pd.errors.DtypeWarning)  # a column of numbers and text: text
            with pd.read_csv(file, dtype=dtype, keep_default_na=False, skipinitialspace=True, index_col=False,
                             encoding="utf-8", chunksize=CHUNK_ROWS) as chunks:
                frames = read_chunks(chunks, file, path)
    except (pd.errors.ParserError, pd.errors.ParserWarning) as err:
        raise InputError(malformed(path, err)) from None
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: not a readable CSV file: {one_line(err)}") from None
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def read_chunks(chunks, file, path: Path) -> list[pd.DataFrame]:
    """Every chunk, reporting on stderr how much of `file` is read (`progress_meter`)."""
    meter = progress_meter(path)
    frames = []
    try:
        for chunk in chunks:
            frames.append(chunk)
            meter.update(file.tell() - meter.n)
        meter.update(file.tell() - meter.n)
    finally:
        meter.close()
    return frames


def progress_meter(path: Path):
    """Nothing for a file up to PROGRESS_MIN_BYTES; above, a bar on a terminal, else `PlainProgress` lines."""
    size = path.stat().st_size
    if size > PROGRESS_MIN_BYTES and not sys.stderr.isatty():
        return PlainProgress(path.name, size)
    return tqdm(total=size, desc=f"reading {path.name}", unit="B", unit_scale=True, file=sys.stderr,
                disable=size <= PROGRESS_MIN_BYTES)


class PlainProgress:
    """Lines 'YYYY-MM-DD HH:MM:SS reading NAME: k/n MB' on stderr, at most one per PROGRESS_EVERY_S, and the last."""

    def __init__(self, name: str, size: int):
        self.name, self.size, self.n, self.last_line = name, size, 0, time.monotonic()

    def update(self, increment: int) -> None:
        self.n += increment
        now = time.monotonic()
        if increment and (self.n >= self.size or now - self.last_line >= PROGRESS_EVERY_S):
            print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} reading {self.name}: "
                  f"{self.n / 1e6:.0f}/{self.size / 1e6:.0f} MB", file=sys.stderr, flush=True)
            self.last_line = now

    def close(self) -> None:
        pass


def malformed(path: Path, err: Exception) -> str:
    """The message for a file pandas cannot split into rows: the line of the first record longer than the
    header, or of a quoted field still open at the end of the file; else pandas' own words."""
    with closing(records(path)) as scan:
        _, header = next(scan)
        line = None
        for line, fields in scan:
            if len(fields) > len(header):
                return f"{path}: line {line}: {len(fields)} fields, but the header has {len(header)}"
    if "EOF inside string" in str(err) and line is not None:  # the last record holds the rest of the file
        return f"{path}: line {line}: a quoted field is not closed before the end of the file"
    return f"{path}: not a readable CSV file: {one_line(err)}"


# ---------------------------------------------------------------- messages


def one_line(err: Exception) -> str:
    return " ".join(str(err).split())


def shown(text: str, limit: int = 60) -> str:
    """`text` quoted on one line (line breaks escaped), cut after about `limit` characters."""
    quoted = repr(text)
    return quoted if len(quoted) <= limit else f"{quoted[:limit]}...{quoted[0]} ({len(text)} characters)"


def number(value: float) -> str:
    """A float in the fewest digits that give it back exactly: 1.9, -140, 1.0000000000000002."""
    return repr(float(value)).removesuffix(".0")


def listing(names, most: int = 12) -> str:
    """Names, quoted, separated by commas; after `most` of them, how many there are in all."""
    shown_names = ", ".join(shown(name, 40) for name in list(names)[:most])
    return shown_names if len(names) <= most else f"{shown_names}, ... ({len(names)} in all)"


def cell(table: CsvTable, row: int, column: str) -> str:
    """Where a message about one cell points: file, line and column."""
    return f"{table.path}: line {table.line_of(row)}: column {shown(column)}"


# ---------------------------------------------------------------- TOML fields

# The keys each table of instance.toml may hold (SPEC sections 2 and 4), by dotted table name ("" is the
# top level); an array of tables ([[models]]) lists the keys of one entry. Any other key is an error
# (`check_known_keys`). An extension adds its keys here.
KNOWN_KEYS = {
    "": ("name", "description", "cluster", "workload", "setup_options", "models", "files"),
    "cluster": ("gpu_count", "gpu_memory_gb", "gpu_type"),
    "cluster.gpu_types": ("name", "count", "memory_gb", "cost_per_hour"),
    "objective": ("kind", "min_quality"),
    "workload": ("arrival_rate_rps", "slo_mean_ttft_ms", "headroom", "slo_p95_ttft_ms", "slo_p99_ttft_ms"),
    "setup_options": ("tp", "mps_pct"),
    "models": ("name", "weights_gb", "kv_cache_gb", "required", "checkpoint"),
    "files": ("profiles", "scores"),
}


# SPEC 4.4's and 4.5's keys in tables that had keys before them: accepted, and suggested when a key is close
# to one, but not listed among the known keys of a message, which name those of an instance with one GPU
# type, the quality objective and one replica per model.
EXTENSION_KEYS = {"": ("objective",), "cluster": ("gpu_types",), "models": ("max_replicas",)}


def check_known_keys(config: dict, path: Path) -> None:
    """Every key of every table in KNOWN_KEYS is one it lists, or one of EXTENSION_KEYS (a misspelt optional
    key would otherwise be ignored, and a key of a newer SPEC planned without)."""
    for table, known in KNOWN_KEYS.items():
        extended = known + EXTENSION_KEYS.get(table, ())
        for where, entry in tables_at(config, table):
            unknown = [key for key in entry if key not in extended]
            if unknown:
                raise InputError(unknown_key(path, where, unknown[0], known, extended))


def unknown_key(path: Path, where: str, key: str, known: tuple[str, ...], accepted: tuple[str, ...]) -> str:
    """The message for `key` in the table `where`: the closest accepted key, if one is close, and the known
    ones."""
    close = difflib.get_close_matches(key, accepted, n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    name = f"{where}.{key}" if where else key
    return f"{path}: field {shown(name)}: unknown key ({hint}known: {', '.join(known)})"


def tables_at(config: dict, table: str) -> list[tuple[str, dict]]:
    """(name, table) for the table at a dotted name: one, one per entry of an array of tables, or none."""
    value = config
    for part in table.split(".") if table else ():
        value = value.get(part) if isinstance(value, dict) else None
    if isinstance(value, list):
        return [(f"{table}[{k}]", entry) for k, entry in enumerate(value) if isinstance(entry, dict)]
    return [(table, value)] if isinstance(value, dict) else []


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


def optional_tail_bounds(workload: dict, path: Path) -> dict[str, float]:
    """`workload.slo_p95_ttft_ms` and `slo_p99_ttft_ms` (SPEC 4.6): positive numbers, by percentile, when given."""
    return {p: require_number(workload, f"slo_{p}_ttft_ms", path, f"workload.slo_{p}_ttft_ms")
            for p in TAIL_PERCENTILES if f"slo_{p}_ttft_ms" in workload}


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


def parse_gpu_types(cluster: dict, path: Path) -> tuple[GpuType, ...]:
    """`[[cluster.gpu_types]]` (SPEC 4.4), numbered type by type; () when the cluster lists none."""
    if "gpu_types" not in cluster:
        return ()
    given = [key for key in ("gpu_count", "gpu_memory_gb") if key in cluster]
    if given:
        raise InputError(f"{path}: field 'cluster.{given[0]}': not given with cluster.gpu_types (each type has "
                         "its count and memory_gb)")
    entries = cluster["gpu_types"]
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        raise InputError(f"{path}: field 'cluster.gpu_types': not a non-empty array of tables [[cluster.gpu_types]]")
    types, first = [], 0
    for k, entry in enumerate(entries):
        where = f"cluster.gpu_types[{k}]"
        name = require_str(entry, "name", path, f"{where}.name")
        if name != name.strip() or name in [t.name for t in types]:
            raise InputError(f"{path}: field '{where}.name': {shown(name)} is listed twice or starts or ends with "
                             "a space")
        cost = (require_number(entry, "cost_per_hour", path, f"{where}.cost_per_hour", positive=False)
                if "cost_per_hour" in entry else None)
        types.append(GpuType(name, require_int(entry, "count", path, f"{where}.count"),
                             require_number(entry, "memory_gb", path, f"{where}.memory_gb"), cost, first))
        first += types[-1].count
    return tuple(types)


def parse_objective(config: dict, path: Path) -> Objective:
    """`[objective]` (SPEC 4.4): kind "quality" (the default) or "cost" with min_quality in [0, 1]."""
    table = config.get("objective", {})
    if not isinstance(table, dict):
        raise InputError(f"{path}: [objective]: not a table")
    kind = table.get("kind", "quality")
    if kind not in OBJECTIVES:
        raise InputError(f"{path}: field 'objective.kind': {kind!r} is not one of {', '.join(OBJECTIVES)}")
    if "min_quality" not in table:
        if kind == "cost":
            raise InputError(f"{path}: field 'objective.min_quality': missing; kind = \"cost\" needs it")
        return Objective(kind)
    value = table["min_quality"]
    if kind != "cost":
        raise InputError(f"{path}: field 'objective.min_quality': given with kind = \"{kind}\"; it is read only "
                         "with kind = \"cost\"")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise InputError(f"{path}: field 'objective.min_quality': {value!r} is not a quality in [0, 1]")
    return Objective(kind, float(value))


def check_objective(instance: Instance, path: Path | str) -> None:
    """The cost objective needs a cost per hour for every GPU type; replicas (SPEC 4.5) are not planned with GPU
    types or the cost objective."""
    if instance.has_replicas and (instance.typed or instance.objective.kind == "cost"):
        k = next(k for k, model in enumerate(instance.models) if model.max_replicas > 1)
        raise InputError(f"{path}: field 'models[{k}].max_replicas': max_replicas > 1 is not supported with "
                         "cluster.gpu_types or the cost objective")
    if instance.objective.kind != "cost":
        return
    if not instance.typed:
        raise InputError(f"{path}: field 'objective.kind': \"cost\" needs [[cluster.gpu_types]] with "
                         "cost_per_hour (the cluster lists no GPU types)")
    for k, gpu_type in enumerate(instance.gpu_types):
        if gpu_type.cost_per_hour is None:
            raise InputError(f"{path}: field 'cluster.gpu_types[{k}].cost_per_hour': missing; the cost objective "
                             f"needs the cost of GPU type {shown(gpu_type.name)}")


def with_objective(instance: Instance, objective: Objective) -> Instance:
    """The instance with another objective (the command line's, or a frontier's point), checked as the file's."""
    changed = dataclasses.replace(instance, objective=objective)
    check_objective(changed, instance.folder / "instance.toml")
    return changed


def with_gpu_counts(instance: Instance, counts: Mapping[str, int]) -> Instance:
    """The instance with `counts[name]` GPUs of each named type (the others as listed; a count may exceed the
    file's), renumbered type by type and gpu_count their total, checked as the file's: `InputError` when a model
    fits no GPU left, `BeyondLimits` when a limit of the planner is passed."""
    types, first = [], 0
    for gpu_type in instance.gpu_types:
        types.append(dataclasses.replace(gpu_type, count=counts.get(gpu_type.name, gpu_type.count), first_gpu=first))
        first += types[-1].count
    changed = dataclasses.replace(instance, gpu_types=tuple(types), gpu_count=first,
                                  gpu_type=types_described(types))
    path = instance.folder / "instance.toml"
    check_objective(changed, path)
    check_every_model_fits(changed, path)
    check_limits(changed, path)
    return changed


def types_described(gpu_types) -> str:
    """'4 x A100-80GB + 2 x H100-80GB': the cluster's description with GPU types."""
    return " + ".join(f"{t.count} x {t.name}" for t in gpu_types)


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
        check_model_name(name, path, f"{where}.name")
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
                max_replicas=require_int(entry, "max_replicas", path, f"{where}.max_replicas")
                if "max_replicas" in entry else 1,
            )
        )
    check_unique_model_names(models, path)
    return tuple(models)


def check_model_name(name: str, path: Path, where: str) -> None:
    """A model name is matched to CSV names, which are read stripped, and names a column of the scores."""
    if name != name.strip():
        raise InputError(f"{path}: field '{where}': {shown(name)} starts or ends with a space (CSV names are "
                         "read without them, so it would match none)")
    if name == PROMPT_COLUMN:
        raise InputError(f"{path}: field '{where}': a model may not be named '{PROMPT_COLUMN}', the scores "
                         "file's prompt column")


def check_unique_model_names(models: list[Model], path: Path) -> None:
    """Names are unique, and none is the name of another model's replica slot (NAME#r, SPEC 4.5)."""
    seen = set()
    for k, model in enumerate(models):
        if model.name in seen:
            raise InputError(f"{path}: field 'models[{k}].name': model {shown(model.name)} is listed twice")
        seen.add(model.name)
    slots = {slot: model.name for model in models for slot in model.slot_names[1:]}
    for k, model in enumerate(models):
        if model.name in slots:
            raise InputError(f"{path}: field 'models[{k}].name': {shown(model.name)} is the name of a replica of "
                             f"model {shown(slots[model.name])} (max_replicas)")


# ---------------------------------------------------------------- CSV checks

SCORE_TOLERANCE = 1e-9  # a score this close to [0, 1] is clipped into it (SPEC section 2)


def check_columns(table: CsvTable, columns) -> None:
    """Each of `columns` appears exactly once in the header."""
    for column in columns:
        positions = [k + 1 for k, name in enumerate(table.header) if name == column]
        if not positions:
            raise InputError(f"{table.path}: column {shown(column)} is missing (the file's columns: "
                             f"{listing(table.header)})")
        if len(positions) > 1:
            raise InputError(f"{table.path}: line {table.header_line}: column {shown(column)} appears "
                             f"{len(positions)} times (columns {', '.join(map(str, positions))})")


def finite_column(table: CsvTable, column: str) -> np.ndarray:
    """A column as floats; the first cell that is not a finite number is an error."""
    cells = table.column(column)
    if is_numeric_dtype(cells) and not is_bool_dtype(cells):
        values = cells.to_numpy(dtype=float)
    else:
        values = pd.to_numeric(cells.astype(str).str.strip(), errors="coerce").to_numpy(dtype=float)
    for row in np.flatnonzero(~np.isfinite(values)):
        text = str(cells.iloc[row]).strip()
        what = f"{shown(text)} is not a {'finite number' if np.isinf(values[row]) else 'number'}"
        raise InputError(f"{cell(table, row, column)}: {what if text else 'empty'}")
    return values


def numeric_column(table: CsvTable, column: str, *, integer: bool = False) -> np.ndarray:
    """A column of non-negative finite numbers (integers if `integer`); the first other cell is an error."""
    values = finite_column(table, column)
    for row in np.flatnonzero(values < 0):
        raise InputError(f"{cell(table, row, column)}: {number(values[row])} is negative")
    if integer:
        for row in np.flatnonzero(values != np.round(values)):
            raise InputError(f"{cell(table, row, column)}: {number(values[row])} is not an integer")
    return values


def check_positive(values: np.ndarray, column: str, table: CsvTable) -> None:
    for row in np.flatnonzero(values <= 0):
        raise InputError(f"{cell(table, row, column)}: {number(values[row])} is not positive")


def check_known_models(names: np.ndarray, models: tuple[Model, ...], table: CsvTable) -> None:
    known = [m.name for m in models]
    for row in np.flatnonzero(~np.isin(names, known)):
        raise InputError(f"{cell(table, row, 'model')}: unknown model {shown(names[row])} (instance.toml lists "
                         f"{listing(known)})")


def check_no_duplicate_rows(keys: pd.DataFrame, what: str, table: CsvTable) -> None:
    duplicated = keys.duplicated(keep="first").to_numpy()
    for row in np.flatnonzero(duplicated):
        first = int(np.flatnonzero((keys == keys.iloc[row]).all(axis=1).to_numpy())[0])
        raise InputError(f"{table.path}: line {table.line_of(row)}: duplicate {what} "
                         f"(first at line {table.line_of(first)})")


def parse_profiles(table: CsvTable, models: tuple[Model, ...], tp_options, mps_options, bounded=(),
                   gpu_types: tuple[GpuType, ...] = ()) -> dict:
    """Curves keyed by (model name, Option), for options inside `setup_options` only; with the percentile
    columns the file has, which the percentiles in `bounded` must have (SPEC 4.6); with GPU types, each
    row's type is its `gpu_type` cell (the one type's name when there is one type and no such column)."""
    check_columns(table, PROFILE_COLUMNS + tuple(f"{p}_ttft_ms" for p in bounded))
    tails = [p for p in TAIL_PERCENTILES if f"{p}_ttft_ms" in table.header]
    names = table.text("model")
    check_known_models(names, models, table)
    tp = numeric_column(table, "tp", integer=True)
    mps = numeric_column(table, "mps_pct", integer=True)
    rate = numeric_column(table, "rate_rps")
    ttft = numeric_column(table, "mean_ttft_ms")
    check_positive(tp, "tp", table)
    check_mps_range(mps, table)
    check_positive(rate, "rate_rps", table)
    check_positive(ttft, "mean_ttft_ms", table)
    types = profile_gpu_types(table, gpu_types)
    tidy = pd.DataFrame({"model": names, "gpu_type": types, "tp": tp.astype(int), "mps_pct": mps.astype(int),
                         "rate": rate, "ttft": ttft})
    for p in tails:
        tidy[p] = numeric_column(table, f"{p}_ttft_ms")
        check_positive(tidy[p].to_numpy(), f"{p}_ttft_ms", table)
    what = "profile point (model, gpu_type, tp, mps_pct, rate_rps)" if gpu_types else \
        "profile point (model, tp, mps_pct, rate_rps)"
    check_no_duplicate_rows(tidy[["model", "gpu_type", "tp", "mps_pct", "rate"]], what, table)
    kept = tidy[tidy.tp.isin(tp_options) & tidy.mps_pct.isin(mps_options)]
    curves = {}
    for (name, type_k, tp_k, mps_k), points in kept.groupby(["model", "gpu_type", "tp", "mps_pct"], sort=True):
        points = points.sort_values("rate")
        curves[(name, Option(int(tp_k), int(mps_k), type_k))] = Curve(
            tuple(points.rate), tuple(points.ttft), **{f"{p}_ttfts_ms": tuple(points[p]) for p in tails})
    return curves


def profile_gpu_types(table: CsvTable, gpu_types: tuple[GpuType, ...]) -> np.ndarray:
    """Each profile row's GPU type: "" without GPU types (a `gpu_type` column is then not read); else its
    `gpu_type` cell, a listed type, which may be left out only when one type is listed."""
    rows = len(table.frame)
    if not gpu_types:
        return np.full(rows, "", dtype=object)
    known = [t.name for t in gpu_types]
    if "gpu_type" not in table.header:
        if len(gpu_types) > 1:
            raise InputError(f"{table.path}: column 'gpu_type' is missing (instance.toml lists {len(gpu_types)} "
                             f"GPU types: {listing(known)})")
        return np.full(rows, known[0], dtype=object)
    check_columns(table, ("gpu_type",))
    types = table.text("gpu_type") if rows else np.array([], dtype=object)
    for row in np.flatnonzero(~np.isin(types, known)):
        raise InputError(f"{cell(table, row, 'gpu_type')}: unknown GPU type {shown(str(types[row]))} "
                         f"(instance.toml lists {listing(known)})")
    return types


def check_mps_range(mps: np.ndarray, table: CsvTable) -> None:
    for row in np.flatnonzero((mps < 1) | (mps > 100)):
        raise InputError(f"{cell(table, row, 'mps_pct')}: {number(mps[row])} is outside 1..100")


def check_every_model_has_a_curve(models, curves, path: Path) -> None:
    for model in models:
        if not any(name == model.name for name, _ in curves):
            raise InputError(
                f"{path}: model {shown(model.name)}: empty curve (no profile rows for any option in setup_options)"
            )


def check_every_model_fits(instance: Instance, path: Path) -> None:
    for model in instance.models:
        if not instance.options(model):
            check_tail_bounds_leave_an_option(instance, model, path)
            profiled = sorted({option.tp for name, option in instance.curves if name == model.name})
            needs = ", ".join(f"tp{tp}: {model.shard_gb(tp):.1f} GB" for tp in profiled)
            raise InputError(
                f"{path}: model {shown(model.name)}: fits on no GPU (a shard of each profiled option needs {needs}; "
                f"{gpus_described(instance)})"
            )


def check_tail_bounds_leave_an_option(instance: Instance, model: Model, path: Path) -> None:
    """A model whose options fit but all break a tail bound at their first profiled point (SPEC 4.6)."""
    fitting = dataclasses.replace(instance, tail_slo_ms={}).options(model)
    if not fitting:
        return
    for p, bound in instance.tail_slo_ms.items():
        lowest = min(instance.curve(model, o).percentile_ms(p)[0] for o in fitting)
        if lowest > bound:
            raise InputError(f"{path}: field 'workload.slo_{p}_ttft_ms': no option of model {shown(model.name)} "
                             f"meets {bound:g} ms (its lowest {p} TTFT, at a first profiled load, is {lowest:g} ms)")
    raise InputError(f"{path}: [workload]: every option of model {shown(model.name)} breaks one of the tail bounds "
                     f"{', '.join(f'slo_{p}_ttft_ms' for p in instance.tail_slo_ms)} at its first profiled load")
def gpus_described(instance: Instance) -> str:
    """The GPUs' memory and the largest tp each type allows, for a message."""
    if not instance.typed:
        return f"GPUs have {instance.gpu_memory_gb:g} GB, and tp can be at most {instance.gpu_count}"
    return "; ".join(f"{t.name}: {t.memory_gb:g} GB, tp at most {t.count}" for t in instance.gpu_types)


def parse_scores(table: CsvTable, models: tuple[Model, ...]) -> tuple[tuple[str, ...], np.ndarray]:
    check_columns(table, (PROMPT_COLUMN,) + tuple(m.name for m in models))
    if table.frame.empty:
        raise InputError(f"{table.path}: no prompts (the file has a header and no rows)")
    ids = table.text(PROMPT_COLUMN)
    check_prompt_ids(ids, table)
    scores = np.column_stack([score_column(table, model.name) for model in models])
    scores.flags.writeable = False
    return tuple(ids), scores


def check_prompt_ids(ids: np.ndarray, table: CsvTable) -> None:
    """Prompt ids are not empty and not repeated."""
    for row in np.flatnonzero(ids == ""):
        raise InputError(f"{cell(table, row, PROMPT_COLUMN)}: empty")
    index = pd.Index(ids)
    if not index.is_unique:
        row = int(np.flatnonzero(index.duplicated(keep="first"))[0])
        first = int(np.flatnonzero(ids == ids[row])[0])
        raise InputError(f"{cell(table, row, PROMPT_COLUMN)}: duplicate prompt {shown(ids[row])} "
                         f"(first at line {table.line_of(first)})")


def score_column(table: CsvTable, column: str) -> np.ndarray:
    """A model's scores: numbers in [0, 1]; one within SCORE_TOLERANCE of it is clipped into it."""
    values = finite_column(table, column)
    for row in np.flatnonzero(values < -SCORE_TOLERANCE):
        raise InputError(f"{cell(table, row, column)}: {number(values[row])} is negative")
    for row in np.flatnonzero(values > 1 + SCORE_TOLERANCE):
        raise InputError(f"{cell(table, row, column)}: {number(values[row])} is above 1 (by more than the "
                         f"tolerance {SCORE_TOLERANCE:g})")
    return np.clip(values, 0.0, 1.0)


# ---------------------------------------------------------------- limits

# The sizes the planner accepts (SPEC section 5, which gives the measurements behind them).
MAX_GPUS = 1024
MAX_MODELS = 64
MAX_OPTIONS = 256  # setup options of one model that have a curve and fit a GPU
MAX_PLACEMENTS = 65_536  # (option, GPU) pairs over all models: the joint MIP's placement binaries
MAX_PROMPTS = 10_000_000


def check_limits(instance: Instance, path: Path) -> None:
    """One line per limit of SPEC section 5."""
    widest = max(instance.models, key=lambda model: len(instance.options(model)))
    choices = sum(len(instance.options(model)) * model.max_replicas for model in instance.models)
    gpus = f"{path}: field 'cluster.{'gpu_types' if instance.typed else 'gpu_count'}'"
    check_limit(instance.gpu_count, MAX_GPUS, gpus, "GPUs")
    check_limit(len(instance.models), MAX_MODELS, f"{path}: [[models]]", "models")
    check_limit(len(instance.options(widest)), MAX_OPTIONS, f"{path}: model {shown(widest.name)}",
                "setup options with a curve that fit a GPU")
    check_limit(choices * instance.gpu_count, MAX_PLACEMENTS, gpus,
                f"(option, GPU) pairs ({choices} options of all models x {instance.gpu_count} GPUs)")
    check_limit(instance.prompt_count, MAX_PROMPTS, f"{instance.scores_path}", "prompts")


def check_limit(count: int, limit: int, where: str, what: str) -> None:
    if count > limit:
        raise BeyondLimits(f"{where}: {count:,} {what}, above the planner's limit of {limit:,} (docs/spec.md "
                         "section 5)")


# ---------------------------------------------------------------- loading


def load_instance(folder: str | Path) -> Instance:
    """Read and validate an instance folder; raise `InputError` on the first problem."""
    raw = read_instance(folder)
    path = raw.toml_path
    cluster = require_table(raw.config, "cluster", path)
    workload = require_table(raw.config, "workload", path)
    options = require_table(raw.config, "setup_options", path)
    gpu_types = parse_gpu_types(cluster, path)
    objective = parse_objective(raw.config, path)
    models = parse_models(raw.config, path)
    tp_options = require_int_list(options, "tp", path, "setup_options.tp")
    mps_options = require_int_list(options, "mps_pct", path, "setup_options.mps_pct", upper=100)
    tail_slo_ms = optional_tail_bounds(workload, path)
    curves = parse_profiles(raw.profiles, models, tp_options, mps_options, tuple(tail_slo_ms), gpu_types)
    check_every_model_has_a_curve(models, curves, raw.profiles.path)
    prompt_ids, scores = parse_scores(raw.scores, models)
    name = require_str(raw.config, "name", path, "name")
    description = raw.config.get("description", "")
    gpu_type = cluster.get("gpu_type", "") or types_described(gpu_types)
    instance = Instance(
        name=name,
        description=description if isinstance(description, str) else str(description),
        folder=raw.folder,
        scores_path=raw.scores.path,
        **cluster_size(cluster, gpu_types, path),
        gpu_type=gpu_type if isinstance(gpu_type, str) else str(gpu_type),
        arrival_rate_rps=require_number(workload, "arrival_rate_rps", path, "workload.arrival_rate_rps"),
        slo_mean_ttft_ms=require_number(workload, "slo_mean_ttft_ms", path, "workload.slo_mean_ttft_ms"),
        headroom=optional_headroom(workload, path),
        tail_slo_ms=MappingProxyType(tail_slo_ms),
        tp_options=tp_options,
        mps_options=mps_options,
        models=models,
        curves=MappingProxyType(curves),
        prompt_ids=prompt_ids,
        scores=scores,
        gpu_types=gpu_types,
        objective=objective,
    )
    check_objective(instance, path)
    check_every_model_fits(instance, path)
    check_limits(instance, path)
    return instance


def cluster_size(cluster: dict, gpu_types: tuple[GpuType, ...], path: Path) -> dict:
    """gpu_count and gpu_memory_gb: as given, or with GPU types their total count and largest memory."""
    if gpu_types:
        return {"gpu_count": sum(t.count for t in gpu_types), "gpu_memory_gb": max(t.memory_gb for t in gpu_types)}
    return {"gpu_count": require_int(cluster, "gpu_count", path, "cluster.gpu_count"),
            "gpu_memory_gb": require_number(cluster, "gpu_memory_gb", path, "cluster.gpu_memory_gb")}
