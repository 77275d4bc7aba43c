"""The loader items of issue 17 (7-11, 13, 14, 21): each bad input ends `solve.py` with exit status 2 and
exactly one line on stderr naming the file, the line or field, and what is wrong; each input the issue
wants accepted loads."""

import re

import numpy as np
import pytest

import solve
from conftest import edit
from models.problem import instance as loader
from models.problem.instance import load_instance

KNOWN_MODEL_KEYS = "known: name, weights_gb, kv_cache_gb, required, checkpoint"


def solve_error(folder, capsys) -> str:
    """What `solve.py FOLDER` prints on stderr, after checking it exits 2 with exactly one line."""
    status = solve.main([str(folder), "--method", "quality-greedy"])
    err = capsys.readouterr().err
    assert status == 2, err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    return err.removesuffix("\n")


# ---------------------------------------------------------------- 7. duplicate column headers


@pytest.mark.parametrize("filename, text, column, positions", [
    ("scores.csv", "prompt_id,small,large,small\np1,0.9,1.0,0.9\n", "small", "2, 4"),
    ("scores.csv", "prompt_id,small,large,prompt_id\np1,0.9,1.0,p1\n", "prompt_id", "1, 4"),
    ("profiles.csv", "model,tp,mps_pct,rate_rps,mean_ttft_ms, tp\nsmall,1,50,5,20,1\n", "tp", "2, 6"),
])
def test_a_column_read_twice_is_an_error(tiny_copy, capsys, filename, text, column, positions):
    (tiny_copy / filename).write_text(text)
    assert solve_error(tiny_copy, capsys) == (f"error: {tiny_copy / filename}: line 1: column '{column}' appears "
                                              f"2 times (columns {positions})")


def test_a_repeated_column_that_is_not_read_is_ignored(tiny_copy):
    (tiny_copy / "scores.csv").write_text("prompt_id,small,note,large,note\np1,0.9,a,1.0,b\np2,0.5,,0.9,\n")
    assert load_instance(tiny_copy).scores.tolist() == [[0.9, 1.0], [0.5, 0.9]]


# ---------------------------------------------------------------- 8. physical line numbers


def test_line_numbers_count_blank_lines_and_line_breaks_in_quotes(tiny_copy, capsys):
    # line 3 is blank and the id on lines 4-5 is quoted over two lines: p3 (row 2) is on line 6, not on row + 2 = 4
    (tiny_copy / "scores.csv").write_text('prompt_id,small,large\np1,0.9,1.0\n\n"p2\nsecond line",0.5,0.9\n'
                                          "p3,0.2,high\np4,0.6,0.6\n")
    assert solve_error(tiny_copy, capsys) == (f"error: {tiny_copy / 'scores.csv'}: line 6: column 'large': "
                                              "'high' is not a number")


def test_line_numbers_with_crlf_whitespace_lines_and_a_byte_order_mark(tiny_copy, capsys):
    text = "\ufeffmodel,tp,mps_pct,rate_rps,mean_ttft_ms\r\n  \r\nsmall,1,50,5,20\r\n\r\nsmall,1,50,-10,30\r\n"
    (tiny_copy / "profiles.csv").write_bytes(text.encode())
    assert solve_error(tiny_copy, capsys) == (f"error: {tiny_copy / 'profiles.csv'}: line 5: column 'rate_rps': "
                                              "-10 is negative")


@pytest.mark.parametrize("rows, line", [("p1,0.9,1.0,0.3\np2,0.5,0.9\n", 2), ("p1,0.9,1.0\n\np2,0.5,0.9,\n", 4)])
def test_a_row_longer_than_the_header_is_named_by_its_line(tiny_copy, capsys, rows, line):
    # pandas alone takes an extra field in the first row as an index column, silently shifting the scores
    (tiny_copy / "scores.csv").write_text("prompt_id,small,large\n" + rows)
    assert solve_error(tiny_copy, capsys) == (f"error: {tiny_copy / 'scores.csv'}: line {line}: 4 fields, but the "
                                              "header has 3")


def test_an_unclosed_quote_is_named_by_the_line_it_opens_on(tiny_copy, capsys):
    (tiny_copy / "scores.csv").write_text('prompt_id,small,large\np1,0.9,1.0\n\n"p2,0.5,0.9\np3,0.2,1.0\n')
    assert solve_error(tiny_copy, capsys) == (f"error: {tiny_copy / 'scores.csv'}: line 4: a quoted field is not "
                                              "closed before the end of the file")


def test_line_numbers_after_a_field_larger_than_the_csv_modules_limit(tiny_copy, capsys):
    # the csv module stops at 131072 characters a field unless told otherwise; pandas has no limit
    (tiny_copy / "scores.csv").write_text(f'prompt_id,small,large\n"{"x" * 200_000}\ny",0.9,1.0\np2,0.5,-1\n')
    assert solve_error(tiny_copy, capsys) == (f"error: {tiny_copy / 'scores.csv'}: line 4: column 'large': -1 is "
                                              "negative")


def test_line_numbers_across_chunks(tiny_copy, capsys, monkeypatch):
    # two rows per chunk: the bad cell is in the second chunk, whose column pandas reads as text; line 5 is blank
    monkeypatch.setattr(loader, "CHUNK_ROWS", 2)
    edit(tiny_copy / "scores.csv", "p4,0.6,0.6", "\np4,0.6,x")
    assert solve_error(tiny_copy, capsys) == (f"error: {tiny_copy / 'scores.csv'}: line 6: column 'large': 'x' is "
                                              "not a number")


def test_chunked_reading_gives_the_same_instance(tiny, tiny_copy, monkeypatch):
    monkeypatch.setattr(loader, "CHUNK_ROWS", 3)
    chunked = load_instance(tiny_copy)
    assert chunked.prompt_ids == tiny.prompt_ids
    np.testing.assert_array_equal(chunked.scores, tiny.scores)


# ---------------------------------------------------------------- 9. scores just outside [0, 1]


def test_scores_within_1e_9_of_the_range_are_clipped(tiny_copy):
    edit(tiny_copy / "scores.csv", "p1,0.9,1.0", "p1,-1e-12,1.0000000000000002")
    instance = load_instance(tiny_copy)
    assert instance.scores[0].tolist() == [0.0, 1.0]


@pytest.mark.parametrize("value, message", [
    ("1.000000002", "1.000000002 is above 1 (by more than the tolerance 1e-09)"),
    ("-2e-09", "-2e-09 is negative"),
])
def test_scores_further_out_are_errors_printed_in_full(tiny_copy, capsys, value, message):
    edit(tiny_copy / "scores.csv", "p2,0.5,0.9", f"p2,0.5,{value}")
    assert solve_error(tiny_copy, capsys) == f"error: {tiny_copy / 'scores.csv'}: line 3: column 'large': {message}"


# ---------------------------------------------------------------- 10. names and unknown keys


def test_a_model_may_not_be_named_prompt_id(tiny_copy, capsys):
    edit(tiny_copy / "instance.toml", 'name = "small"', 'name = "prompt_id"')
    assert solve_error(tiny_copy, capsys) == (f"error: {tiny_copy / 'instance.toml'}: field 'models[0].name': a "
                                              "model may not be named 'prompt_id', the scores file's prompt column")


def test_a_model_name_with_a_trailing_space_is_an_error(tiny_copy, capsys):
    edit(tiny_copy / "instance.toml", 'name = "large"', 'name = "large "')
    assert solve_error(tiny_copy, capsys) == (f"error: {tiny_copy / 'instance.toml'}: field 'models[1].name': "
                                              "'large ' starts or ends with a space (CSV names are read without "
                                              "them, so it would match none)")


@pytest.mark.parametrize("old, new, field, rest", [
    ("kv_cache_gb = 2.0\n", "kv_cache_gb = 2.0\nrequird = false\n", "models[0].requird",
     f"did you mean 'required'? {KNOWN_MODEL_KEYS}"),
    ("gpu_type = \"toy\"", "gpu_type = \"toy\"\ncolor = \"red\"", "cluster.color",
     "known: gpu_count, gpu_memory_gb, gpu_type"),
    ("[cluster]", "gpu_count = 2\n[cluster]", "gpu_count",
     "known: name, description, cluster, workload, setup_options, models, files"),
    ('scores = "scores.csv"', 'score = "scores.csv"', "files.score", "did you mean 'scores'? known: profiles, scores"),
])
def test_an_unknown_key_is_named_with_the_known_ones(tiny_copy, capsys, old, new, field, rest):
    edit(tiny_copy / "instance.toml", old, new)
    assert solve_error(tiny_copy, capsys) == (f"error: {tiny_copy / 'instance.toml'}: field '{field}': unknown key "
                                              f"({rest})")


def test_known_keys_are_one_table_per_toml_table(monkeypatch, tiny_copy):
    # an extension adds its keys to KNOWN_KEYS, including those of nested tables
    edit(tiny_copy / "instance.toml", "gpu_type = \"toy\"", "gpu_type = \"toy\"\n[[cluster.gpu_types]]\nname = \"x\"")
    monkeypatch.setitem(loader.KNOWN_KEYS, "cluster", loader.KNOWN_KEYS["cluster"] + ("gpu_types",))
    monkeypatch.setitem(loader.KNOWN_KEYS, "cluster.gpu_types", ("count",))
    with pytest.raises(loader.InputError, match=r"field 'cluster\.gpu_types\[0\]\.name': unknown key \(known: count\)"):
        load_instance(tiny_copy)


# ---------------------------------------------------------------- 11. directories and byte order marks


@pytest.mark.parametrize("filename", ["scores.csv", "instance.toml"])
def test_a_directory_where_a_file_is_expected(tiny_copy, capsys, filename):
    (tiny_copy / filename).unlink()
    (tiny_copy / filename).mkdir()
    assert solve_error(tiny_copy, capsys) == f"error: {tiny_copy / filename}: is a directory, not a file"


def test_a_byte_order_mark_in_instance_toml_is_accepted(tiny, tiny_copy):
    path = tiny_copy / "instance.toml"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert load_instance(tiny_copy).name == tiny.name


# ---------------------------------------------------------------- 13. limits


def test_a_cluster_beyond_the_gpu_limit_is_refused(tiny_copy, capsys):
    edit(tiny_copy / "instance.toml", "gpu_count = 2", "gpu_count = 100000")
    assert solve_error(tiny_copy, capsys) == (f"error: {tiny_copy / 'instance.toml'}: field 'cluster.gpu_count': "
                                              "100,000 GPUs, above the planner's limit of 1,024 (docs/spec.md "
                                              "section 5)")


@pytest.mark.parametrize("limit, value, where, what", [
    ("MAX_MODELS", 1, "instance.toml: [[models]]", "2 models"),
    ("MAX_OPTIONS", 2, "instance.toml: model 'small'", "3 setup options with a curve that fit a GPU"),
    ("MAX_PLACEMENTS", 9, "instance.toml: field 'cluster.gpu_count'",
     "10 (option, GPU) pairs (5 options of all models x 2 GPUs)"),
    ("MAX_PROMPTS", 3, "scores.csv", "4 prompts"),
])
def test_each_limit_is_checked(tiny_copy, capsys, monkeypatch, limit, value, where, what):
    # tiny: 2 models; small has curves for tp1/mps50, tp1/mps100 and tp2/mps50, large for its two tp2 options
    monkeypatch.setattr(loader, limit, value)
    assert solve_error(tiny_copy, capsys) == (f"error: {tiny_copy}/{where}: {what}, above the planner's limit of "
                                              f"{value} (docs/spec.md section 5)")


# ---------------------------------------------------------------- 14. progress on large files


def test_a_large_scores_file_reports_progress_in_timestamped_lines(tiny, tiny_copy, capsys, monkeypatch):
    monkeypatch.setattr(loader, "PROGRESS_MIN_BYTES", 0)
    monkeypatch.setattr(loader, "PROGRESS_EVERY_S", 0.0)
    monkeypatch.setattr(loader, "CHUNK_ROWS", 2)
    assert load_instance(tiny_copy).prompt_ids == tiny.prompt_ids
    lines = capsys.readouterr().err.splitlines()
    assert lines and all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d reading (profiles|scores)\.csv: \d+/\d+ MB",
                                      line) for line in lines), lines
    assert lines[-1].endswith("reading scores.csv: 0/0 MB")


def test_a_small_file_reads_silently(tiny_copy, capsys):
    load_instance(tiny_copy)
    assert capsys.readouterr().err == ""


# ---------------------------------------------------------------- 21. messages


def test_a_missing_model_column_lists_the_columns_the_file_has(tiny_copy, capsys):
    edit(tiny_copy / "scores.csv", "prompt_id,small,large", "prompt_id,small,big")
    assert solve_error(tiny_copy, capsys) == (f"error: {tiny_copy / 'scores.csv'}: column 'large' is missing (the "
                                              "file's columns: 'prompt_id', 'small', 'big')")


def test_a_duplicate_multi_line_prompt_is_shown_on_one_line(tiny_copy, capsys):
    (tiny_copy / "scores.csv").write_text('prompt_id,small,large\n"What is\nthe capital?",0.9,1.0\np2,0.5,0.9\n'
                                          '"What is\nthe capital?",0.2,1.0\n')
    assert solve_error(tiny_copy, capsys) == (f"error: {tiny_copy / 'scores.csv'}: line 5: column 'prompt_id': "
                                              "duplicate prompt 'What is\\nthe capital?' (first at line 2)")


def test_a_long_cell_is_cut(tiny_copy, capsys):
    edit(tiny_copy / "scores.csv", "p3,0.2,1.0", "p3,0.2," + "x" * 200)
    assert solve_error(tiny_copy, capsys) == (f"error: {tiny_copy / 'scores.csv'}: line 4: column 'large': "
                                              f"'{'x' * 59}...' (200 characters) is not a number")
