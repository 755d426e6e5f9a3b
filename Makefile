# Two commands do all the set-up on a fresh machine with Python 3.10+ and make:
#   make demo   create .venv, install biodl, train the demo model on embedded data
#   make test   same venv, run the test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.biodl-installed

.PHONY: demo test bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/biodl run heart-failure

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,bench]'
	$(BIN)/python benchmarks/engine_overhead.py
	$(BIN)/python benchmarks/heart_failure.py
	$(BIN)/python benchmarks/image_pipeline.py
	$(BIN)/python benchmarks/image_memory.py

clean:
	rm -rf $(VENV) runs .pytest_cache
