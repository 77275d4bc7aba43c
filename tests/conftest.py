"""Shared fixtures: the shipped instances and a way to make broken copies of them."""

import shutil
import time
from pathlib import Path

import pytest

from models.problem.instance import load_instance

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"
MEASURED = DATA / "measured"  # measured data shipped with the project (data/measured/README.md)


@pytest.fixture(scope="session")
def tiny():
    return load_instance(DATA / "tiny")


@pytest.fixture
def tiny_copy(tmp_path):
    """A writable copy of data/tiny; returns its folder."""
    folder = tmp_path / "tiny"
    shutil.copytree(DATA / "tiny", folder)
    return folder


def edit(path: Path, old: str, new: str) -> None:
    """Replace one exact piece of a file's text (the test fails if it is not there)."""
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def wait_for(condition, seconds: float) -> bool:
    """Poll `condition` every 50 ms until it holds (True) or `seconds` pass (False): bounded waits on processes."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
