# Two commands do all the set-up on a fresh machine with Python 3.10+ and make:
#   make demo   create .venv, install biodl, train the demo model on embedded data
#   make test   same venv, run the test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.biodl-installed

.PHONY: demo test docs bench bench-histolab clean

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
	$(BIN)/python -m pytest -q -n auto  # a worker a core (tests/conftest.py shares out the threads)

# the documentation site: references generated from the code, then a strict build (warnings fail) into site/
# (built under docs/_build, where MyST-NB keeps the executed notebooks beside the build, then copied)
docs: $(STAMP)
	$(BIN)/python docs/gen_reference.py
	$(BIN)/python -m sphinx -W --keep-going -q -b html docs docs/_build/html
	@rm -rf site && cp -r docs/_build/html site
	@echo "docs: site/index.html"

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,bench]'
	$(BIN)/python benchmarks/engine_overhead.py
	$(BIN)/python benchmarks/heart_failure.py
	$(BIN)/python benchmarks/tuned_svm.py
	$(BIN)/python benchmarks/image_pipeline.py
	$(BIN)/python benchmarks/channel_stats.py
	$(BIN)/python benchmarks/image_memory.py
	$(BIN)/python benchmarks/explain_ig.py
	$(BIN)/python benchmarks/vessels_tiling.py
	$(BIN)/python benchmarks/wsi_tiling.py
	$(BIN)/python benchmarks/export.py
	$(BIN)/python benchmarks/loader_throughput.py
	$(BIN)/python benchmarks/gpu_loader_check.py
	$(BIN)/python benchmarks/stain_normalisation.py
	$(BIN)/python benchmarks/cli_latency.py
	$(BIN)/python benchmarks/study_inputs.py
	$(BIN)/python benchmarks/report_figures.py
	$(BIN)/python benchmarks/vessels_cpu.py

# histolab (the baseline of benchmarks/wsi_tiling.py) in a venv of its own: it pins scikit-image < 0.19.4
# (built from source here, minutes) and numpy < 2. Its pin openslide-python < 1.3.2 predates the
# openslide-bin wheel (the library it would need from the system), so 1.4 is put in after it; the
# API histolab uses is unchanged.
HISTOLAB := .venv-histolab
bench-histolab:
	@test -x $(HISTOLAB)/bin/python || $(PYTHON) -m venv $(HISTOLAB)
	$(HISTOLAB)/bin/python -m pip install --quiet --disable-pip-version-check histolab==0.7.0 openslide-bin
	$(HISTOLAB)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps 'openslide-python>=1.4'

clean:
	rm -rf $(VENV) $(HISTOLAB) runs .pytest_cache
