"""The Python API (`models/__init__.py`, `models/api.py`, docs/api.md) and the `routerplan` console script:
a cheap `import models`, the public names, `solve`'s methods, options and exceptions, the documented
example, and the installed command's interface."""

import dataclasses
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import models
from conftest import REPO
from models.analysis.compare import compare
from models.analysis.sweep import run_sweep
from models.evaluation.evaluate import evaluate_plan
from models.methods import registry
from models.methods.exact import build_joint_mip
from models.problem.instance import Option, load_instance
from models.problem.plan import Infeasible, Plan

TINY_OPTIMUM = 1349 / 1620  # data/tiny/README.md
PUBLIC = {"load_instance": load_instance, "solve": None, "evaluate_plan": evaluate_plan, "compare": compare,
          "sweep": run_sweep, "build_joint_mip": build_joint_mip, "Plan": Plan}
HEAVY = ("pyomo", "highspy", "pandas", "matplotlib", "models.methods")


def imported_after(code: str) -> list[str]:
    """The heavy modules a fresh interpreter has imported after running `code`."""
    probe = f"{code}; import sys; print('\\n'.join(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, check=True)
    return [name for name in done.stdout.split() if name.startswith(HEAVY)]


def test_import_models_is_cheap():
    assert imported_after("import models") == []


def test_import_solve_is_cheap():
    """`solve` imports the registry on its first call, not when it is imported."""
    assert imported_after("from models import solve") == []


def test_public_names():
    assert models.__all__ == list(PUBLIC)
    for name, value in PUBLIC.items():
        assert name in dir(models)
        assert f"`{name}" in models.__doc__, name
        if value is not None:
            assert getattr(models, name) is value, name
    assert models.solve is models.api.solve
    from models import sweep
    assert sweep is run_sweep


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'solver'"):
        models.solver  # noqa: B018


def test_solve_tiny(tiny):
    plan = models.solve(tiny)
    assert isinstance(plan, Plan)
    assert plan.method == "exact" and plan.solver.status == "optimal"
    assert plan.quality == pytest.approx(TINY_OPTIMUM, abs=1e-6)
    assert plan.setup == (Option(2, 50), Option(2, 50))


def test_solve_by_method_and_option(tiny):
    assert models.solve(tiny, per_prompt=True).quality == pytest.approx(TINY_OPTIMUM, abs=1e-6)
    heuristic = models.solve(tiny, method="heuristic", utilization_floor=0.5)
    assert heuristic.method == "heuristic" and heuristic.quality <= TINY_OPTIMUM + 1e-9


def test_solve_forwards_every_option(tiny, monkeypatch):
    """Every field of SolveOptions, present and future, reaches the method as given."""
    received = []
    monkeypatch.setitem(registry.METHODS, "exact", lambda instance, options: received.append(options))
    given = {f.name: f"value of {f.name}" for f in dataclasses.fields(registry.SolveOptions)}
    models.solve(tiny, **given)
    assert received == [registry.SolveOptions(**given)]


def test_unknown_method_lists_the_methods(tiny):
    with pytest.raises(ValueError, match="unknown method 'simplex'") as error:
        models.solve(tiny, method="simplex")
    for name in registry.METHODS:
        assert name in str(error.value)


def test_unknown_option_names_the_valid_ones(tiny):
    with pytest.raises(TypeError, match="'timelimit'") as error:
        models.solve(tiny, timelimit=5)
    for field in dataclasses.fields(registry.SolveOptions):
        assert field.name in str(error.value)


def test_solve_raises_the_methods_exceptions(tiny):
    """Below 18 ms, the lowest mean TTFT any setup of tiny reaches (its README), there is no plan."""
    with pytest.raises(Infeasible, match="18.00 ms"):
        models.solve(dataclasses.replace(tiny, slo_mean_ttft_ms=10.0))


# ---------------------------------------------------------------- docs/api.md


DOC = (REPO / "docs" / "api.md").read_text()


def documented(language: str) -> str:
    """The one code block of docs/api.md in `language`."""
    blocks = re.findall(rf"^```{language}\n(.*?)^```$", DOC, flags=re.M | re.S)
    assert len(blocks) == 1, f"docs/api.md should hold one ```{language} block, not {len(blocks)}"
    return blocks[0]


def test_documented_example_runs_as_shown():
    """The example, run from the repository's root, prints what docs/api.md says it prints
    (HiGHS's banner aside: HiGHS writes it once per process)."""
    done = subprocess.run([sys.executable, "-c", documented("python")], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    printed = [line for line in done.stdout.splitlines()
               if not line.startswith(("Running HiGHS", "Includes third-party"))]
    assert printed == documented("text").splitlines()


def test_documented_names_and_exit_statuses():
    for name in models.__all__:
        assert f"### `{name}" in DOC, name
    for status in range(5):
        assert re.search(rf"^\| {status} \|", DOC, flags=re.M), f"exit status {status}"


# ---------------------------------------------------------------- the console script


def console_script() -> str:
    """`routerplan` in the running interpreter's bin folder, where pip installs console scripts."""
    script = shutil.which("routerplan", path=str(Path(sys.executable).parent))
    assert script, "routerplan is not installed next to python: pip install -e '.[test]'"
    return script


def help_text(command: list[str], program: str) -> str:
    """`command --help`, with the program name replaced and whitespace collapsed (argparse wraps the
    usage lines after the program name, so a longer name moves the line breaks)."""
    env = {**os.environ, "COLUMNS": "100"}
    done = subprocess.run([*command, "--help"], capture_output=True, text=True, cwd=REPO, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: {program} ")
    return " ".join(done.stdout.replace(f"usage: {program} ", "usage: PROGRAM ", 1).split())


def test_console_script_has_solve_py_interface():
    installed = help_text([console_script()], "routerplan")
    card = help_text([sys.executable, "solve.py"], "solve.py")
    assert installed == card


def test_console_script_exit_status():
    """main's return value is the process's exit status: 2 for a usage error."""
    done = subprocess.run([console_script(), "--no-such-option"], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 2
    assert done.stderr == "error: unrecognized arguments: --no-such-option (see --help)\n"


def test_solve_and_the_command_line_hold_numpy_blas_to_one_thread(tiny, monkeypatch):
    """OpenBLAS's spinning threads cost CPU and no wall time here (models/problem/blas.py). The command line
    runs in a fresh process, where numpy is not loaded yet when it starts."""
    from threadpoolctl import threadpool_info

    seen = []

    def record(instance, options):
        seen.append({info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"})
        raise Infeasible("recorded")

    monkeypatch.setitem(registry.METHODS, "exact", record)
    with pytest.raises(Infeasible):
        models.solve(tiny, "exact")
    assert seen == [{1}]
    code = ("import solve\nfrom threadpoolctl import threadpool_info\nfrom models.methods import registry\n"
            "def record(instance, options):\n"
            "    print(sorted({i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas'}))\n"
            "    raise SystemExit(0)\n"
            "registry.METHODS['exact'] = record\n"
            "solve.main(['data/tiny', '--method', 'exact'])\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.stdout.strip().splitlines()[-1] == "[1]"
