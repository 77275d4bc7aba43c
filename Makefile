# Two commands do all the set-up on a fresh machine with Python 3.11:
#   make solve   creates .venv, installs the project, solves the default instance
#   make test    creates .venv, installs the project with its test extra, runs the tests
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: solve test clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/activate
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

solve: $(VENV)/.installed
	$(BIN)/python solve.py

test: $(VENV)/.installed
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV)
