# README contract: `make demo` and `make test` each do all set-up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.da3_jax_installed

.PHONY: install test demo study lint clean

$(STAMP): setup.py Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The CPU torch wheel first, so nothing later pulls a CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev,torch]"
	# The official package for parity tests, without its heavy dependency list (e3nn: its
	# Gaussian adapter rotates SH coefficients with it; evo: its pose alignment).
	$(PY) -m pip install -q --no-deps depth-anything-3==0.1.1 e3nn==0.6.0 opt-einsum-fx==0.1.4 evo==1.38.1
	touch $(STAMP)

install: $(STAMP)

test: install
	$(PY) -m ruff check .
	$(PY) -m pytest -n 2 --dist loadfile --durations=20 tests

demo: install
	$(PY) -m experiments.demo --workdir=runs/demo

# CPU scaling study (model size x prediction targets), resumable: rerun to continue.
STUDY_STEPS ?= 600
study: install
	$(PY) -m experiments.study --config=experiments/studies/cpu_scaling.py:steps=$(STUDY_STEPS) \
	    --workdir=runs/study-$(STUDY_STEPS)

lint: install
	$(PY) -m ruff check .

clean:
	rm -rf $(VENV) runs
