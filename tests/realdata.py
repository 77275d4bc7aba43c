"""The real-score instance: RouterBench's 0/1 correctness on a shipped instance's cluster and curves.

RouterBench may not be redistributed, so this instance is never shipped: it is
built at run time from ../shared/data/routerbench-subset/scores.csv.
"""

from __future__ import annotations

import re
import shutil
import tomllib
from pathlib import Path

from conftest import DATA, REPO
from models.problem.scoregen import read_routerbench, write_scores

ROUTERBENCH_SCORES = REPO.parent / "shared" / "data" / "routerbench-subset" / "scores.csv"
PAPER_4XA100 = DATA / "paper-4xA100"


def build_real_score_instance(folder: Path, paper: Path = PAPER_4XA100,
                              routerbench: Path = ROUTERBENCH_SCORES) -> Path:
    """Write an instance into `folder` and return it: `paper`'s instance.toml (renamed) and
    profiles, with the real 0/1 correctness of its models on every RouterBench prompt as scores."""
    text = (paper / "instance.toml").read_text()
    config = tomllib.loads(text)
    models = tuple(model["name"] for model in config["models"])
    name = f"routerbench-real-{config['name']}"
    description = (f"RouterBench's real 0/1 correctness of {', '.join(models)} with {config['name']}'s cluster, "
                   "workload and latency curves; built by tests/realdata.py, never shipped")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "instance.toml").write_text(retitled(text, config["name"], name, description))
    shutil.copyfile(paper / config["files"]["profiles"], folder / config["files"]["profiles"])
    write_scores(read_routerbench(routerbench, models), models, folder / config["files"]["scores"])
    return folder


def retitled(toml_text: str, old_name: str, name: str, description: str) -> str:
    """The TOML text with its top-level name and description replaced (the first `name =` line is
    the top-level one: TOML puts top-level keys before every table)."""
    text, renamed = re.subn(rf'^name = "{re.escape(old_name)}"$', f'name = "{name}"', toml_text, count=1,
                            flags=re.MULTILINE)
    text, described = re.subn(r"^description = .*$", f'description = "{description}"', text, count=1,
                              flags=re.MULTILINE)
    if (renamed, described) != (1, 1):
        raise ValueError(f"instance.toml of {old_name}: no top-level name or description line to replace")
    return text
