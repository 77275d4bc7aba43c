"""docs/formulation.md: its worked example's numbers are what the planner computes on data/tiny,
and its constraint table names the model's components."""

import dataclasses
import re

import pytest

from conftest import REPO
from models.methods.exact import add_move_cost, build_joint_mip, solve_exact
from models.problem.moves import Replanning, RunningShard

DOC = (REPO / "docs" / "formulation.md").read_text()


def worked_example() -> dict[str, str]:
    section = DOC.split("## Worked example", 1)[1]
    return dict(re.findall(r"^\| ([^|]+?) \| ([^|]+?) \|$", section, flags=re.M))


def test_worked_example_numbers(tiny):
    table = worked_example()
    plan = solve_exact(tiny)
    by_name = plan.models.set_index("name")
    assert table["setup"] == ", ".join(f"{r.name} tp{r.tp}/mps{r.mps_pct}" for r in plan.models.itertuples())
    computed = {
        "share of large": by_name.share["large"],
        "quality": plan.quality,
        "mean TTFT (ms)": plan.mean_ttft_ms,
        "TTFT contribution of small (ms)": by_name.contribution_ms["small"],
        "TTFT contribution of large (ms)": by_name.contribution_ms["large"],
        "TTFT of large at its load (ms)": by_name.ttft_ms["large"],
        "price of large minus price of small": plan.prices[1] - plan.prices[0],
        "smallest margin of an unsplit prompt": plan.routing.min_margin,
        "quality per ms of target": plan.sensitivity["quality_per_ms_of_target"],
        "quality per request/s of load": plan.sensitivity["quality_per_rps_of_load"],
    }
    for name, value in computed.items():
        written = table[name]
        decimals = len(written.split(".")[1])
        assert float(written) == pytest.approx(value, abs=10 ** -decimals), name


def replanning_form(tiny):
    """The per-GPU MIP with the move cost of re-planning (16)."""
    m = build_joint_mip(tiny, placement="per-gpu")
    add_move_cost(m, Replanning(frozenset(), 0.1))
    return m


def replicas_form(tiny):
    """The per-GPU MIP of tiny with up to two replicas of each model (SPEC 4.5), re-planning."""
    replicas = dataclasses.replace(tiny, models=tuple(dataclasses.replace(m, max_replicas=2) for m in tiny.models))
    m = build_joint_mip(replicas, placement="per-gpu")
    add_move_cost(m, Replanning(frozenset({RunningShard("small", 2, 50, 0)}), 0.1))
    return m


def test_constraint_table_names_real_components(tiny):
    forms = [build_joint_mip(tiny), build_joint_mip(tiny, per_prompt=True),
             build_joint_mip(tiny, placement="per-gpu"), replanning_form(tiny), replicas_form(tiny)]
    names = set(re.findall(r"`(\w+)(?:\[[^`]*\])?`", DOC.split("## Objective and constraints", 1)[1]
                           .split("Notes on the constraints", 1)[0]))
    assert names, "no component names found"
    for name in names:
        assert any(m.component(name) is not None for m in forms), name
