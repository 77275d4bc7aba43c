"""H100 step times from Splitwise's H100/A100 ratios (models/profiling/gpus.py), the profile command's
--gpu, and the raw files of data/mixed-a100-h100 (the loader reads GPU types only once they are merged)."""

import runpy
import tomllib

import numpy as np
import pandas as pd
import pytest

from conftest import DATA, MEASURED
from test_profiling import table_tree, write_json
from test_profiling_cli import args, toy  # noqa: F401 (toy is a fixture)

from models.cli.profile import main
from models.problem.instance import PROFILE_COLUMNS, Curve
from models.problem.latency import latency_ms
from models.profiling.gpus import GpuRatios, gpu_ratios
from models.profiling.table import read_step_table

HEADER = "model,hardware,prompt_size,batch_size,token_size,prompt_time,token_time,tensor_parallel\n"
# llama2-70b at tp 2: prompt times 100 and 400 ms (A100) against 50 and 100 (H100) at 128 and 512 tokens,
# times per token 20 and 40 (A100) against 10 and 30 (H100) at batch 1 and 4: rho_p = 0.5, 0.25; rho_d = 0.5, 0.75
SPLITWISE = HEADER + "".join(f"llama2-70b,{hw},{n},{b},128,{p},{t},2\n" for hw, n, b, p, t in [
    ("a100-80gb", 128, 1, 100, 20), ("a100-80gb", 512, 1, 400, 20), ("a100-80gb", 512, 4, 1600, 40),
    ("h100-80gb", 128, 1, 50, 10), ("h100-80gb", 512, 1, 100, 10), ("h100-80gb", 512, 4, 400, 30)])


@pytest.fixture
def ratios_csv(tmp_path):
    path = tmp_path / "perf_model.csv"
    path.write_text(SPLITWISE)
    return path


def test_ratios_are_linear_in_log_size_and_flat_outside(ratios_csv):
    ratios = gpu_ratios(ratios_csv, "H100-80GB", [1, 2, 4])
    assert ratios[1] == ratios[2] == ratios[4]  # the only measured degree stands for every tp
    # 256 tokens sit halfway between 128 and 512 in log2: (0.5 + 0.25) / 2; batch 2 halfway between 1 and 4
    assert np.allclose(ratios[2].prefill([64, 128, 256, 512, 4096]), [0.5, 0.5, 0.375, 0.25, 0.25], rtol=1e-12)
    assert np.allclose(ratios[2].decode([1, 2, 4, 64]), [0.5, 0.625, 0.75, 0.75], rtol=1e-12)


def test_nearest_measured_degree_ties_to_the_larger(ratios_csv):
    ratios_csv.write_text(SPLITWISE + SPLITWISE[len(HEADER):].replace(",2\n", ",4\n").replace(",50,10,", ",60,10,"))
    ratios = gpu_ratios(ratios_csv, "H100-80GB", [1, 2, 3, 4, 8])
    assert [float(ratios[tp].prefill(128)[()]) for tp in (1, 2, 3, 4, 8)] == [0.5, 0.5, 0.6, 0.6, 0.6]


def test_derived_step_time_is_the_a100_time_times_the_ratio(tmp_path, ratios_csv):
    # toy table: 5 + 0.01 b s ms at SM shares 50 and 100 %; prefill of 1 x 128 tokens at rho_p(128) = 0.5,
    # of 2 x 128 = 256 tokens at rho_p(256) = 0.375; decode at batch 2: rho_d(2) = 0.625
    table = read_step_table(write_json(tmp_path / "t.json", table_tree(slices=(("llama-7b", 2, 50),
                                                                                ("llama-7b", 2, 100)))))
    h100 = gpu_ratios(ratios_csv, "H100-80GB", [2])[2]
    a100 = table.step_times("llama-7b", 2, 100)
    assert np.allclose(a100.on_gpu(h100).prefill_ms([1, 2], [128]), [[6.28 * 0.5], [7.56 * 0.375]], rtol=1e-12)
    assert np.allclose(a100.on_gpu(h100).decode_ms([2], [64, 512]), [[6.28 * 0.625, 15.24 * 0.625]], rtol=1e-12)
    # MPS shares keep the A100's share scaling: H100 at 50 % over H100 at 100 % is A100's ratio
    half = table.step_times("llama-7b", 2, 50)
    batch, seq = [1, 3, 16], [32, 300, 2000]
    assert np.allclose(half.on_gpu(h100).prefill_ms(batch, seq) / a100.on_gpu(h100).prefill_ms(batch, seq),
                       half.prefill_ms(batch, seq) / a100.prefill_ms(batch, seq), rtol=1e-12)


def test_ratio_one_leaves_the_table_unchanged(tmp_path):
    # the table's own GPU reads no ratio file and scales by exactly 1
    table = read_step_table(write_json(tmp_path / "t.json", table_tree()))
    times = table.step_times("llama-7b", 1, 100)
    same = gpu_ratios(tmp_path / "no-such-file.csv", "A100-80GB", [1])[1]
    assert same == GpuRatios()
    for phase in ("prefill_ms", "decode_ms"):
        assert np.array_equal(getattr(times.on_gpu(same), phase)([1, 5, 40], [20, 100, 900]),
                              getattr(times, phase)([1, 5, 40], [20, 100, 900]))


def test_shipped_h100_ratios_are_below_one():
    for ratios in gpu_ratios(MEASURED / "splitwise-a100-h100" / "perf_model.csv", "H100-80GB", [1, 2, 4, 8]).values():
        assert max(ratios.prefill.ratio) < 1 and max(ratios.decode.ratio) < 1


def test_h100_curves_are_no_slower_than_a100_at_equal_load(toy, tmp_path):  # noqa: F811
    # the shipped ratios are all below 1 (test above), so at every load the A100 curve sustains, the
    # H100 curve of the same option sustains it too, at a mean TTFT no higher
    folder, table, trace = toy
    quick = ("--max-requests", "1000")
    assert main(args(folder, table, trace, *quick, out=tmp_path / "a100.csv")) == 0
    assert main(args(folder, table, trace, *quick, "--gpu", "H100-80GB", out=tmp_path / "h100.csv")) == 0
    a100, h100 = pd.read_csv(tmp_path / "a100.csv"), pd.read_csv(tmp_path / "h100.csv")
    assert "gpu_type" not in a100 and set(h100.gpu_type) == {"H100-80GB"}
    keys = ["model", "tp", "mps_pct"]
    assert set(a100.groupby(keys).groups) == set(h100.groupby(keys).groups)
    for option, slow in a100.groupby(keys):
        fast = h100.set_index(keys).loc[option]
        curve = Curve(tuple(fast.rate_rps), tuple(fast.mean_ttft_ms))
        for point in slow.itertuples():
            assert latency_ms(curve, point.rate_rps) <= point.mean_ttft_ms, (option, point.rate_rps)


def test_unknown_gpu_is_one_line_and_exit_2(toy, capsys):  # noqa: F811
    folder, table, trace = toy
    assert main(args(folder, table, trace, "--gpu", "B200")) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: argument --gpu: invalid choice: 'B200'") and err.count("\n") == 1


@pytest.mark.parametrize("text, message", [
    (None, "{path}: file is missing"),
    (HEADER, "{path}: no llama2-70b prompt-size and batch sweeps on both 'h100-80gb' and 'a100-80gb'"),
    (SPLITWISE.replace(",400,20,", ",0,20,"), "{path}: line 3: column 'prompt_time': 0 is not positive"),
    (SPLITWISE.replace(",128,", ",1.5,", 1), "{path}: line 2: column 'prompt_size': 1.5 is not an integer"),
    (SPLITWISE.replace("token_time", "tokens"), "{path}: column 'token_time' is missing"),
])
def test_bad_ratio_file_is_one_line_and_exit_2(toy, tmp_path, capsys, text, message):  # noqa: F811
    folder, table, trace = toy
    path = tmp_path / "perf_model.csv"
    if text is not None:
        path.write_text(text)
    assert main(args(folder, table, trace, "--gpu", "H100-80GB", "--gpu-ratios", str(path))) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: " + message.format(path=path)) and err.count("\n") == 1


# ---------------------------------------------------------------- data/mixed-a100-h100

MIXED, BASE = DATA / "mixed-a100-h100", DATA / "paper-4xA100"
OPTION = ["model", "tp", "mps_pct"]


def test_mixed_instance_toml_has_two_priced_gpu_types():
    config = tomllib.loads((MIXED / "instance.toml").read_text())
    types = config["cluster"]["gpu_types"]
    assert [(t["name"], t["count"], t["memory_gb"]) for t in types] == [("A100-80GB", 2, 80), ("H100-80GB", 2, 80)]
    assert all(t["cost_per_hour"] > 0 for t in types)
    assert "gpu_count" not in config["cluster"] and "objective" not in config
    base = tomllib.loads((BASE / "instance.toml").read_text())
    assert config["models"] == base["models"] and config["setup_options"] == base["setup_options"]


def test_mixed_profiles_hold_both_types_for_every_option_of_the_paper_instance():
    mixed, base = pd.read_csv(MIXED / "profiles.csv"), pd.read_csv(BASE / "profiles.csv")
    assert {*PROFILE_COLUMNS, "gpu_type"} <= set(mixed.columns)
    options = set(base.groupby(OPTION).groups)
    assert len(options) == 64
    for gpu, curves in mixed.groupby("gpu_type"):
        assert set(curves.groupby(OPTION).groups) == options, gpu
    assert set(mixed.gpu_type) == {"A100-80GB", "H100-80GB"}
    a100 = mixed[mixed.gpu_type == "A100-80GB"].drop(columns="gpu_type").reset_index(drop=True)
    pd.testing.assert_frame_equal(a100, base[a100.columns])  # the A100 curves are the paper instance's


def test_mixed_scores_are_the_paper_instances():
    assert (MIXED / "scores.csv").read_bytes() == (BASE / "scores.csv").read_bytes()


def test_mixed_profiles_are_the_merge_of_the_two_types(tmp_path):
    # make_paper_instances.py --h100-profiles: paper-4xA100's curves and the H100 ones, rewritten byte for byte
    make = runpy.run_path(str(DATA / "make_paper_instances.py"), run_name="make_paper_instances")
    mixed = pd.read_csv(MIXED / "profiles.csv")
    h100 = tmp_path / "h100.csv"
    mixed[mixed.gpu_type == "H100-80GB"].to_csv(h100, index=False)
    make["write_mixed_profiles"](BASE / "profiles.csv", h100, tmp_path / "profiles.csv")
    assert (tmp_path / "profiles.csv").read_bytes() == (MIXED / "profiles.csv").read_bytes()
