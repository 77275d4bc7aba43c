"""docs/tutorial.ipynb runs top to bottom in a fresh kernel of this interpreter and prints the numbers
that data/tiny/README.md works out by hand; it is committed with its outputs cleared.

No skip: nbclient, nbformat and ipykernel are in the test extra, and a kernel that cannot start
fails the tests."""

import re
import sys

import nbformat
import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell

from conftest import REPO

NOTEBOOK = REPO / "docs" / "tutorial.ipynb"
CELL_TIMEOUT = 120  # seconds per cell; the whole notebook takes about 15 s on two busy cores
TINY_OPTIMUM = 1349 / 1620  # data/tiny/README.md
PRICE_DIFFERENCE = 0.4  # p2's gain, 0.9 - 0.5: p2 is split, so it is indifferent
KERNEL_PROBE = "import sys; print('kernel prefix:', sys.prefix)"


@pytest.fixture(scope="module")
def executed() -> nbformat.NotebookNode:
    """The notebook executed with its kernel's prefix printed by one extra cell at the end."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    notebook.cells.append(new_code_cell(KERNEL_PROBE))
    client = NotebookClient(notebook, timeout=CELL_TIMEOUT, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()  # raises on a kernel that does not start and on any cell's error
    return notebook


@pytest.fixture(scope="module")
def printed(executed) -> str:
    """Everything the code cells printed or displayed as text."""
    texts = []
    for cell in executed.cells:
        for output in cell.get("outputs", []):
            if output.output_type == "stream" and output.name == "stdout":
                texts.append(output.text)
            elif "data" in output:
                texts.append(output.data.get("text/plain", ""))
    return "\n".join(texts)


def found(pattern: str, text: str) -> str:
    """The first group of `pattern`'s first match."""
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not in the notebook's output"
    return match.group(1).strip()


def number(pattern: str, text: str) -> float:
    return float(found(pattern, text))


def test_kernel_is_this_interpreter(printed):
    """The kernel runs in this environment (jupyter_client starts the kernelspec's `python` as sys.executable)."""
    assert found(r"kernel prefix: (.+)", printed) == sys.prefix


def test_optimum(printed):
    assert found(r"exact: status (\w+)", printed) == "optimal"
    assert number(r"exact: status optimal, quality (\S+),", printed) == pytest.approx(TINY_OPTIMUM, abs=1e-6)


def test_prices_differ_by_p2s_gain(printed):
    for source in ("routing LP duals", "published", "p2's gain"):
        assert number(rf"price difference \(large - small\):.*{source} (\d\.\d+)", printed) == pytest.approx(
            PRICE_DIFFERENCE, abs=1e-6), source


def test_strong_duality(printed):
    """Optimal prices close the gap, whatever their level; other prices give a strictly larger bound."""
    for prices in ("published prices", "routing LP duals", r"published prices \+ 1"):
        assert number(rf"strong duality gap, {prices}: (\S+)", printed) == pytest.approx(0, abs=1e-9), prices
    assert number(r"strong duality gap, prices \(0, 0.2\): (\S+)", printed) > 1e-3


def test_heuristic_and_per_prompt_form(printed):
    for form in ("per-prompt", "per-prompt MIP solved directly"):
        assert number(rf"{form} (\d\.\d+)", printed) == pytest.approx(TINY_OPTIMUM, abs=1e-6), form
    assert TINY_OPTIMUM - 1e-4 < number(r"heuristic (\d\.\d+)", printed) <= TINY_OPTIMUM + 1e-9


def test_frontier(executed, printed):
    assert number(r"frontier at 60 ms: exact (\S+);", printed) == pytest.approx(TINY_OPTIMUM, abs=1e-6)
    assert number(r"quality per ms of target at 60 ms: (\S+)", printed) == pytest.approx(0.4 / 162, abs=1e-8)
    images = [output for cell in executed.cells for output in cell.get("outputs", [])
              if "image/png" in output.get("data", {})]
    assert len(images) == 1, "the frontier is drawn inline once"


def test_committed_without_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"cell {cell.id}: clear its outputs"
