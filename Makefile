# Two commands do all the set-up on a fresh clone: `make demo` (the main job) and `make test` (the suite).
# Both create .venv and install the project into it first (once; again when pyproject.toml changes).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/hugflow --version
	$(VENV)/bin/hugflow validate --offline requests/add/*.yaml requests/remove/*.yaml
	$(PY) -m hugflow_ray.demo

test: $(VENV)/.installed
	$(PY) -m pytest

bench: $(VENV)/.installed
	$(PY) benchmarks/codec_throughput.py

clean:
	rm -rf $(VENV) demo
