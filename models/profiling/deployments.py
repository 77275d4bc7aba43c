"""What to profile for an instance: every model, tp and MPS share that the table measured and that fits.

The profile command runs before an instance has latency curves, so it reads
only the parts of `instance.toml` it needs (with the loader's own field checks)
instead of loading the whole instance.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from models.problem.instance import (
    InputError,
    Model,
    check_known_keys,
    parse_models,
    read_toml,
    require_int,
    require_int_list,
    require_number,
    require_str,
    require_table,
)
from models.profiling.standins import TABLE_ARCHITECTURES, kv_capacity_tokens
from models.profiling.table import StepTable


@dataclass(frozen=True)
class ProfileTarget:
    """The fields of an instance that decide which curves to build and where to write them."""

    toml_path: Path
    gpu_count: int
    gpu_memory_gb: float
    arrival_rate_rps: float
    models: tuple[Model, ...]
    tp_options: tuple[int, ...]
    mps_options: tuple[int, ...]
    profiles_path: Path


@dataclass(frozen=True)
class Deployment:
    """One curve to build: a model at an option, with the table model standing in for it."""

    model: str
    table_model: str
    tp: int
    mps_pct: int
    kv_tokens: int


def read_target(folder: str | Path) -> ProfileTarget:
    folder = Path(folder)
    path = folder / "instance.toml"
    config = read_toml(path)
    check_known_keys(config, path)
    cluster = require_table(config, "cluster", path)
    options = require_table(config, "setup_options", path)
    files = require_table(config, "files", path)
    return ProfileTarget(
        toml_path=path,
        gpu_count=require_int(cluster, "gpu_count", path, "cluster.gpu_count"),
        gpu_memory_gb=require_number(cluster, "gpu_memory_gb", path, "cluster.gpu_memory_gb"),
        arrival_rate_rps=require_number(require_table(config, "workload", path), "arrival_rate_rps", path,
                                        "workload.arrival_rate_rps"),
        models=parse_models(config, path),
        tp_options=require_int_list(options, "tp", path, "setup_options.tp"),
        mps_options=require_int_list(options, "mps_pct", path, "setup_options.mps_pct", upper=100),
        profiles_path=folder / require_str(files, "profiles", path, "files.profiles"),
    )


def deployments(target: ProfileTarget, table: StepTable, stand_ins: dict[str, str]) -> tuple[Deployment, ...]:
    """Options of `setup_options` the table measured for each model's stand-in, whose shard fits a GPU."""
    found = []
    for k, model in enumerate(target.models):
        table_model = stand_in(model, k, target, table, stand_ins)
        for tp in target.tp_options:
            if tp not in table.tps(table_model) or tp > target.gpu_count:
                continue
            if model.shard_gb(tp) > target.gpu_memory_gb:
                continue
            kv_tokens = kv_capacity_tokens(table_model, tp, model.kv_cache_gb)
            for mps in target.mps_options:
                if mps in table.sm_pcts(table_model, tp):
                    found.append(Deployment(model.name, table_model, tp, mps, kv_tokens))
    return tuple(found)


def stand_in(model: Model, k: int, target: ProfileTarget, table: StepTable, stand_ins: dict[str, str]) -> str:
    """The table model that stands in for `model`; it must be in the table and of known shape."""
    where = f"{target.toml_path}: field 'models[{k}].name'"
    if model.name not in stand_ins:
        raise InputError(f"{where}: no table model stands in for '{model.name}' (give --stand-in {model.name}=MODEL)")
    table_model = stand_ins[model.name]
    if table_model not in table.models():
        raise InputError(f"{table.path}: no measurements for '{table_model}', the stand-in for '{model.name}' "
                         f"(the table has: {', '.join(table.models())})")
    if table_model not in TABLE_ARCHITECTURES:
        raise InputError(f"{where}: stand-in '{table_model}' has no known layer count and hidden size "
                         f"(known: {', '.join(sorted(TABLE_ARCHITECTURES))})")
    return table_model
