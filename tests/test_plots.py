"""Plots of a plan: valid PNG files, and figures that draw the plan's own numbers."""

import dataclasses
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from conftest import DATA
from models.methods.exact import solve_exact
from models.methods.greedy import solve_quality_greedy
from models.problem.instance import load_instance
from models.output.plots import model_colors, plot_gpu_map, plot_latency, write_plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_valid_png(path: Path) -> None:
    """A PNG by its signature, that matplotlib reads back as a picture that is not blank."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 10_000
    image = matplotlib.image.imread(path)
    assert image.shape[0] >= 300 and image.shape[1] >= 400
    assert np.ptp(image[..., :3]) > 0.5


@pytest.fixture(scope="module")
def tiny_plan(tiny):
    return solve_exact(tiny)


def test_tiny_plots_are_valid_pngs(tiny, tiny_plan, tmp_path):
    paths = write_plots(tiny, tiny_plan, tmp_path / "plots")
    assert [p.name for p in paths] == ["tiny-exact-gpu-map.png", "tiny-exact-latency.png"]
    for path in paths:
        assert_valid_png(path)


def test_default_instance_plots_are_valid_pngs(tmp_path):
    # The exact plan of data/paper-4xA100, the plan the CLI would plot: a few seconds (3 s to 16 s
    # measured on a shared 2-core machine).
    instance = load_instance(DATA / "paper-4xA100")
    plan = solve_exact(instance)
    for path in write_plots(instance, plan, tmp_path):
        assert_valid_png(path)


def stacked_heights(axes, gpu_count: int) -> np.ndarray:
    """Total bar height per GPU on one panel of the GPU map."""
    totals = np.zeros(gpu_count)
    for bar in axes.patches:
        totals[round(bar.get_x() + bar.get_width() / 2)] += bar.get_height()
    return totals


def test_gpu_map_stacks_each_gpus_shards(tiny, tiny_plan):
    # tiny's optimum (data/tiny/README.md, setup C): small tp2 (4 GB shards) and large tp2 (12 GB),
    # both at MPS 50%, on both GPUs: 16 GB and 100% on each.
    memory, compute = plot_gpu_map(tiny, tiny_plan).axes
    assert stacked_heights(memory, 2) == pytest.approx([16.0, 16.0])
    assert stacked_heights(compute, 2) == pytest.approx([100.0, 100.0])
    colors = model_colors(tiny)
    assert {bar.get_facecolor() for bar in memory.patches} == {colors["small"], colors["large"]}


def test_latency_plot_marks_each_models_operating_point(tiny, tiny_plan):
    figure = plot_latency(tiny, tiny_plan)
    panels = [axes for axes in figure.axes if axes.get_visible()]
    assert len(panels) == 2
    for axes, row in zip(panels, tiny_plan.models.itertuples()):
        stars = [line for line in axes.lines if line.get_marker() == "*"]
        assert len(stars) == 1
        assert stars[0].get_xydata()[0] == pytest.approx([row.load_rps, row.ttft_ms])
        assert row.name in axes.get_title()


def test_an_overloaded_plan_is_drawn_with_its_load_beyond_capacity(tmp_path):
    # quality-greedy ignores load: on data/paper-4xA100 it sends more to yi-34b than any setup carries.
    instance = load_instance(DATA / "paper-4xA100")
    plan = solve_quality_greedy(instance)
    overloaded = plan.models[~np.isfinite(plan.models.ttft_ms.astype(float))]
    assert len(overloaded) > 0
    titles = [axes.get_title() for axes in plot_latency(instance, plan).axes if axes.get_visible()]
    for row in overloaded.itertuples():
        assert any(row.name in title and "beyond capacity" in title for title in titles)
    for path in write_plots(instance, plan, tmp_path):
        assert_valid_png(path)


def test_latency_plot_draws_the_headroom_line_beside_r_k(tiny):
    # headroom 0.44: large (r_K 8) is planned at most 0.56 x 8 = 4.48 requests/s, small (r_K 10) 5.6
    at = dataclasses.replace(tiny, headroom=0.44)
    plan = solve_exact(at)
    panels = [axes for axes in plot_latency(at, plan).axes if axes.get_visible()]
    for axes, limit in zip(panels, (5.6, 4.48)):
        dashdot = [line for line in axes.lines if line.get_linestyle() == "-."]
        assert len(dashdot) == 1 and dashdot[0].get_xdata()[0] == pytest.approx(limit)
    without = [axes for axes in plot_latency(tiny, solve_exact(tiny)).axes if axes.get_visible()]
    assert not any(line.get_linestyle() == "-." for axes in without for line in axes.lines)
