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

# the report tests open pages in headless Chromium: Debian's package, installed once (as root)
CHROMIUM := $(shell command -v chromium || command -v chromium-browser || command -v google-chrome)

test: $(STAMP)
ifeq ($(CHROMIUM),)
	-(export DEBIAN_FRONTEND=noninteractive; apt-get install -y -q chromium >/dev/null 2>&1 || (apt-get update -q >/dev/null && \
	  apt-get install -y -q chromium >/dev/null)) || echo "warning: chromium not installed; browser tests skip"
endif
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/engine_overhead.py
	$(BIN)/python benchmarks/heart_failure.py
	$(BIN)/python benchmarks/image_pipeline.py
	$(BIN)/python benchmarks/image_memory.py
	$(BIN)/python benchmarks/explain_ig.py
	$(BIN)/python benchmarks/vessels_tiling.py

clean:
	rm -rf $(VENV) runs .pytest_cache
