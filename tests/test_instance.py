"""The loader: tiny loads as written, and each bad input of SPEC section 2 is named in one line."""

import numpy as np
import pytest

from conftest import edit
from models.problem.instance import InputError, Option, load_instance


def test_tiny_loads_as_written(tiny):
    assert tiny.model_names == ("small", "large")
    assert tiny.gpu_count == 2 and tiny.gpu_memory_gb == 18
    assert tiny.scores.shape == (4, 2)
    np.testing.assert_array_equal(tiny.scores[2], [0.2, 1.0])
    # large at tp1 needs 20 + 2 = 22 GB > 18 GB, and has no curve: only its tp2 options remain
    assert tiny.options(tiny.models[1]) == (Option(2, 50), Option(2, 100))
    assert tiny.curve(tiny.models[1], Option(2, 50)).rates_rps == (4.0, 8.0)


def test_profiles_outside_setup_options_are_ignored(tiny_copy):
    with open(tiny_copy / "profiles.csv", "a") as f:
        f.write("small,4,30,10,5\n")
    instance = load_instance(tiny_copy)
    assert all(option.tp in (1, 2) for _, option in instance.curves)


BAD_INPUTS = {
    # case: (file to edit, old text, new text, words the message must contain)
    "missing column": ("profiles.csv", "mean_ttft_ms", "ttft", ["profiles.csv", "mean_ttft_ms", "missing"]),
    "missing score column": ("scores.csv", "prompt_id,small,large", "prompt_id,small,big",
                             ["scores.csv", "large", "missing"]),
    "unknown model": ("profiles.csv", "large,2,100,4,60", "huge,2,100,4,60",
                      ["profiles.csv", "line 8", "model", "huge"]),
    "duplicate prompt": ("scores.csv", "p4,0.6,0.6", "p1,0.6,0.6", ["scores.csv", "line 5", "prompt_id", "p1"]),
    "duplicate profile point": ("profiles.csv", "small,1,100,10,15", "small,1,50,10,15",
                                ["profiles.csv", "line 4", "duplicate profile point", "line 3"]),
    "negative ttft": ("profiles.csv", "large,2,50,8,140", "large,2,50,8,-140",
                      ["profiles.csv", "line 7", "mean_ttft_ms", "negative"]),
    "negative score": ("scores.csv", "p2,0.5,0.9", "p2,-0.5,0.9", ["scores.csv", "line 3", "small", "negative"]),
    "score above one": ("scores.csv", "p2,0.5,0.9", "p2,0.5,1.9", ["scores.csv", "line 3", "large", "above 1"]),
    "non-numeric rate": ("profiles.csv", "small,2,50,10,18", "small,2,50,ten,18",
                         ["profiles.csv", "line 5", "rate_rps", "not a number"]),
    "non-numeric score": ("scores.csv", "p3,0.2,1.0", "p3,0.2,high", ["scores.csv", "line 4", "large", "not a number"]),
    "fractional tp": ("profiles.csv", "small,2,50,10,18", "small,1.5,50,10,18",
                      ["profiles.csv", "line 5", "tp", "not an integer"]),
    "mps out of range": ("profiles.csv", "small,2,50,10,18", "small,2,150,10,18",
                         ["profiles.csv", "line 5", "mps_pct", "outside 1..100"]),
    "zero rate": ("profiles.csv", "small,2,50,10,18", "small,2,50,0,18", ["profiles.csv", "line 5", "rate_rps",
                                                                          "not positive"]),
    "negative weights": ("instance.toml", "weights_gb = 4.0", "weights_gb = -4.0",
                         ["instance.toml", "models[0].weights_gb"]),
    "non-numeric arrival rate": ("instance.toml", "arrival_rate_rps = 10.0", 'arrival_rate_rps = "fast"',
                                 ["instance.toml", "workload.arrival_rate_rps", "not a number"]),
    "missing field": ("instance.toml", "gpu_count = 2\n", "", ["instance.toml", "cluster.gpu_count", "missing"]),
    "invalid toml": ("instance.toml", "[workload]", "[workload", ["instance.toml", "not valid TOML"]),
    "empty curve": ("instance.toml", "tp = [1, 2]", "tp = [1]",
                    ["profiles.csv", "large", "empty curve"]),
    "model fits on no GPU": ("instance.toml", "weights_gb = 20.0", "weights_gb = 40.0",
                             ["instance.toml", "large", "fits on no GPU", "tp2: 22.0 GB"]),
    "duplicate model": ("instance.toml", 'name = "large"', 'name = "small"', ["instance.toml", "models[1].name",
                                                                               "listed twice"]),
    "missing profiles file": ("instance.toml", 'profiles = "profiles.csv"', 'profiles = "curves.csv"',
                              ["curves.csv", "missing"]),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_named_in_one_line(tiny_copy, case):
    filename, old, new, words = BAD_INPUTS[case]
    edit(tiny_copy / filename, old, new)
    with pytest.raises(InputError) as caught:
        load_instance(tiny_copy)
    message = str(caught.value)
    assert "\n" not in message
    for word in words:
        assert word in message, f"{case}: {word!r} not in {message!r}"


def test_missing_scores_file(tiny_copy):
    (tiny_copy / "scores.csv").unlink()
    with pytest.raises(InputError, match=r"scores\.csv: file is missing"):
        load_instance(tiny_copy)


def test_missing_folder(tmp_path):
    with pytest.raises(InputError, match="no such directory"):
        load_instance(tmp_path / "nowhere")


def test_empty_scores(tiny_copy):
    (tiny_copy / "scores.csv").write_text("prompt_id,small,large\n")
    with pytest.raises(InputError, match=r"scores\.csv: no prompts"):
        load_instance(tiny_copy)
