# simdist_jax: two commands on a fresh machine with Python 3.11:
#   make demo       -> creates .venv, installs the pinned stack + package, runs the CartPole pipeline (small preset)
#   make test       -> same set-up, runs the default (fast) test suite
#   make test-slow  -> the slow suite (end-to-end runs, MJX compiles); CI (.ci/run) runs both
#   make lint       -> ruff (rules in pyproject.toml)
#   make test-jax-next -> the fast suite in .venv-next on requirements-jax-next.txt (newest jax for Python 3.11)
PYTHON ?= python3
VENV   ?= .venv
VENV_NEXT ?= .venv-next
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup demo test test-slow test-jax-next lint bench clean

# $(call make_venv,VENV_DIR,LOCK): a venv with exactly LOCK installed, then the package with --no-deps.
define make_venv
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "simdist_jax needs Python >= 3.11; $(PYTHON) is $$($(PYTHON) -V 2>&1). Use make PYTHON=python3.11" >&2; exit 1; }
	$(PYTHON) -m venv $(1)
	$(1)/bin/python -m pip install -q --upgrade pip
	$(1)/bin/python -m pip install -q -r $(2)
	$(1)/bin/python -m pip install -q --no-deps -e .
	touch $(1)/.installed
endef

$(STAMP): requirements.txt pyproject.toml
	$(call make_venv,$(VENV),requirements.txt)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/simdist-jax run --config=experiments/configs/cartpole.py:small --workdir=runs/cartpole_small

test: $(STAMP)
	$(PY) -m pytest -q -m "not slow" --durations=25

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow --durations=20

$(VENV_NEXT)/.installed: requirements-jax-next.txt pyproject.toml
	$(call make_venv,$(VENV_NEXT),requirements-jax-next.txt)

test-jax-next: $(VENV_NEXT)/.installed
	SIMDIST_LOCK=requirements-jax-next.txt $(VENV_NEXT)/bin/python -m pytest -q -m "not slow" --durations=25

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(PY) benchmarks/env_throughput.py

clean:
	rm -rf $(VENV) $(VENV_NEXT) runs
