# README contract: `make demo` and `make test` each do all set-up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Two set-up stamps: the demo needs only the package (jax, flax, grain, ...); the tests also
# need the dev tools, the CPU torch wheel and the official package (parity references, ~2.5 GB).
CORE_STAMP := $(VENV)/.da3_jax_core
STAMP := $(VENV)/.da3_jax_installed

.PHONY: install install-core test demo study lint clean

$(CORE_STAMP): setup.py Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $(CORE_STAMP)

$(STAMP): $(CORE_STAMP)
	# The CPU torch wheel first, so nothing later pulls a CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev,torch]"
	# The official package for parity tests, without its heavy dependency list (e3nn: its
	# Gaussian adapter rotates SH coefficients with it; evo: its pose alignment). lpips: the
	# LPIPS reference and its v0.1 lin weights, without torchvision (CUDA-linked on PyPI;
	# tests/eval/test_lpips.py stands in a torchvision with the backbones' layer lists).
	$(PY) -m pip install -q --no-deps depth-anything-3==0.1.1 e3nn==0.6.0 opt-einsum-fx==0.1.4 evo==1.38.1 lpips==0.1.4
	# gsplat's pure-PyTorch projection / SH (gsplat/cuda/_torch_impl.py) are the rasterizer's
	# parity references; the wheel is pure Python (CUDA kernels compile only on first CUDA use).
	BUILD_NO_CUDA=1 $(PY) -m pip install -q --no-deps gsplat==1.5.3
	touch $(STAMP)

install-core: $(CORE_STAMP)

install: $(STAMP)

test: install
	$(PY) -m ruff check .
	$(PY) -m pytest -n 2 --dist loadfile --durations=20 tests

demo: install-core
	$(PY) -m experiments.demo --workdir=runs/demo

# CPU scaling study (model size x prediction targets), resumable: rerun to continue.
STUDY_STEPS ?= 600
study: install-core
	$(PY) -m experiments.study --config=experiments/studies/cpu_scaling.py:steps=$(STUDY_STEPS) \
	    --workdir=runs/study-$(STUDY_STEPS)

lint: install
	$(PY) -m ruff check .

clean:
	rm -rf $(VENV) runs
