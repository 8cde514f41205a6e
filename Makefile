# Two entry points a fresh machine needs: `make demo` and `make test`.
# The virtual environment is built on first use and reused afterwards.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, pinned to the CPU build that pip finds locally (a bare `torch` would pull a
	# multi-GB CUDA build); the `profile` extra's range is then already satisfied.
	$(BIN)/pip install --quiet 'torch==2.13.0' || $(BIN)/pip install --quiet torch --index-url https://download.pytorch.org/whl/cpu
	$(BIN)/pip install --quiet -e '.[dev,plot,ray,profile]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/shardwise plan --model gpt-39b --cluster selene-a100-64 --workload train-gpt-s2048
	$(BIN)/shardwise plan --model llama3-70b --cluster seed-4x8-h100 --workload infer-chat-slo

test: $(STAMP)
	$(BIN)/ruff check solver tests benchmarks
	$(BIN)/mypy solver
	$(BIN)/pytest -x

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
