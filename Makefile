# raybio: `make demo` runs the expert-count study on the bundled genome; `make test` runs the tests.
# Both create .venv and install what they need. torch is installed first with a pinned spec:
# an open range would pull a multi-GB CUDA build (override: make test TORCH_SPEC=torch==2.9.1).
PYTHON ?= python3
TORCH_SPEC ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
# The demo needs only the package itself (no test, DeepSpeed, transformers or tracker extras).
DEMO_STAMP := $(VENV)/.demo-installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e ".[dev,deepspeed]" "$(TORCH_SPEC)"
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

$(DEMO_STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e . "$(TORCH_SPEC)"
	rm -f $(VENV)/.demo-installed-*
	touch $(DEMO_STAMP)

# The demo budget (160 steps) and a short throughput probe (4 timed steps x 2 interleaved rounds per config)
# keep the demo under 10 minutes on 2 cores.
demo: $(DEMO_STAMP)
	RAY_DATA_DISABLE_PROGRESS_BARS=1 $(BIN)/python sweeps/expert_count.py --budget demo --probe-steps 4 --probe-rounds 2

test: $(STAMP)
	$(BIN)/ruff check .
	RAY_DATA_DISABLE_PROGRESS_BARS=1 $(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) runs .pytest_cache
