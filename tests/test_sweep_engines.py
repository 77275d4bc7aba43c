"""The Ray engine against the local one: the same sweep CSV, the same curves byte for byte, a failed task as
one row, Ctrl-C keeping the finished rows and resume solving only the rest.

One local Ray (2 CPUs, no dashboard, this machine only) serves the whole module. Its workers import the
package and tests/ through PYTHONPATH, and run tests/sweep_faults.py's fault at start. The `seconds`
column is wall-clock time and differs from run to run; every other cell must be equal.
"""

import os
from pathlib import Path

import pandas as pd
import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install '.[ray]'): the ray engine is not tested")

import models.analysis.sweep as sweep_module  # noqa: E402
from models.analysis.sweep import run_sweep  # noqa: E402
from models.cli.profile import main as profile_main  # noqa: E402
from models.cli.main import main as solve_main  # noqa: E402
from models.problem.tasks import Engine  # noqa: E402
from conftest import DATA  # noqa: E402
from sweep_faults import FAULTY_TARGET_MS, break_one_target  # noqa: E402
from test_profiling_cli import QUICK, args as profile_args, toy  # noqa: E402,F401
from typed_tiny import write_typed_tiny  # noqa: E402

TESTS = Path(__file__).resolve().parent
RAY = Engine("ray")
GRID = ["--slo-ms", "45:60:15", "--load-scale", "1:1.2:0.2", "--headroom", "0,0.1", "--methods", "exact,equal-split"]
# typed tiny (tests/typed_tiny.py) over GPU counts, one of which fits no model: an infeasible row on both engines
GPU_GRID = ["--slo-ms", "60:60:1", "--gpu-counts", "A=1:2", "--gpu-counts", "B=1:1", "--methods", "exact"]


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    previous = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(TESTS.parent)] + ([previous] if previous else []))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1",
             runtime_env={"worker_process_setup_hook": "sweep_faults.break_one_target"})
    yield
    ray.shutdown()
    if previous is None:
        del os.environ["PYTHONPATH"]
    else:
        os.environ["PYTHONPATH"] = previous


def without_seconds(table: pd.DataFrame) -> str:
    return table.drop(columns="seconds").to_csv(index=False)


@pytest.mark.parametrize("typed, grid, rows", [(False, GRID, 2 * 2 * 2 * 2), (True, GPU_GRID, 2)])
def test_a_ray_sweep_writes_the_local_csv(tmp_path, typed, grid, rows):
    folder = write_typed_tiny(tmp_path / "typed") if typed else DATA / "tiny"
    for engine in ("local", "ray"):
        argv = [str(folder), *grid, "--engine", engine, "--plot", str(tmp_path / engine), "--quiet"]
        assert solve_main(["sweep", *argv]) == 0
    local, on_ray = (pd.read_csv(tmp_path / engine / "tiny-sweep.csv") for engine in ("local", "ray"))
    assert len(local) == rows
    assert without_seconds(on_ray) == without_seconds(local)


def test_a_task_that_raises_is_one_error_row_on_either_engine(tiny, monkeypatch):
    on_ray = run_sweep(tiny, (FAULTY_TARGET_MS, 60.0), ("exact", "equal-split"), progress=False, engine=RAY)
    break_one_target(monkeypatch.setattr)
    local = run_sweep(tiny, (FAULTY_TARGET_MS, 60.0), ("exact", "equal-split"), progress=False)
    assert without_seconds(on_ray) == without_seconds(local)
    failed = on_ray[on_ray.target_ms == FAULTY_TARGET_MS]
    assert list(failed.status) == ["error", "error"] and set(failed.reason) == {"RuntimeError: broken on purpose"}
    assert failed.seconds.isna().all() and failed.quality.isna().all()
    assert on_ray[on_ray.target_ms == 60.0].quality.notna().all()


def test_ctrl_c_keeps_the_finished_rows_and_resume_solves_only_the_rest(tiny, tmp_path, monkeypatch):
    targets, methods = (20.0, 35.0, 45.0, 60.0), ("exact", "equal-split")
    csv_path = tmp_path / "tiny-sweep.csv"
    made = []
    table_row = sweep_module.table_row

    def interrupt_at_the_third(*row_args):
        if len(made) == 2:
            raise KeyboardInterrupt
        made.append(row_args[1])
        return table_row(*row_args)

    monkeypatch.setattr(sweep_module, "table_row", interrupt_at_the_third)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(tiny, targets, methods, progress=False, engine=RAY, csv_path=csv_path)
    kept = pd.read_csv(csv_path)
    assert len(kept) == 2
    monkeypatch.setattr(sweep_module, "table_row", lambda *row_args: made.append(row_args[1]) or table_row(*row_args))
    resumed = run_sweep(tiny, targets, methods, progress=False, engine=RAY, csv_path=csv_path, resume=csv_path)
    assert len(made) == len(targets) * len(methods)  # the two kept rows were not solved again
    full = run_sweep(tiny, targets, methods, progress=False)
    assert without_seconds(resumed) == without_seconds(full)
    assert without_seconds(pd.read_csv(csv_path)) == without_seconds(full)


def test_ray_curves_are_the_local_curves_byte_for_byte(toy, tmp_path):
    folder, table, trace = toy
    local, on_ray = tmp_path / "local.csv", tmp_path / "ray.csv"
    assert profile_main(profile_args(folder, table, trace, *QUICK, out=local)) == 0
    assert profile_main(profile_args(folder, table, trace, *QUICK, "--engine", "ray", out=on_ray)) == 0
    assert on_ray.read_bytes() == local.read_bytes()
