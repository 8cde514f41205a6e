# Two entry points a fresh machine needs: `make demo` and `make test`.
# The virtual environment is built on first use and reused afterwards.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck clean check-exports

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

# check-exports (not part of `make test`): feed every golden export to the engines' own
# parsers, installed at pinned versions in a separate venv that installs on a CPU-only machine.
# DeepSpeed is an sdist whose setup.py imports torch, so it builds against the CPU torch first;
# SGLang comes without its GPU stack (--no-deps), plus what importing its ServerArgs needs.
# vLLM (a 239 MB wheel pulling a CUDA torch, ~10 GB installed) and TensorRT-LLM (no PyPI wheel)
# are checked against option lists quoted from their source (benchmarks/check_exports.py).
EXPORTS_VENV  ?= .venv-exports
EXPORTS_BIN   := $(EXPORTS_VENV)/bin
EXPORTS_STAMP := $(EXPORTS_VENV)/.installed

$(EXPORTS_STAMP):
	$(PYTHON) -m venv $(EXPORTS_VENV)
	$(EXPORTS_BIN)/pip install --quiet --upgrade pip
	$(EXPORTS_BIN)/pip install --quiet 'torch==2.13.0' || $(EXPORTS_BIN)/pip install --quiet torch --index-url https://download.pytorch.org/whl/cpu
	$(EXPORTS_BIN)/pip install --quiet --no-build-isolation 'deepspeed==0.19.8'
	$(EXPORTS_BIN)/pip install --quiet --no-deps 'sglang==0.5.23'
	$(EXPORTS_BIN)/pip install --quiet 'orjson==3.13.0' 'pybase64==1.5.1' 'requests==2.34.2' \
		'triton==3.9.0' 'pillow==13.0.0' 'starlette==1.10.0' 'msgspec==0.23.0' 'pyzmq==27.3.0' \
		'ipython==9.19.1' 'aiohttp==3.14.5'
	touch $(EXPORTS_STAMP)

check-exports: $(EXPORTS_STAMP)
	$(EXPORTS_BIN)/python benchmarks/check_exports.py --require deepspeed,sglang,torch

clean:
	rm -rf $(VENV) $(EXPORTS_VENV) .pytest_cache .mypy_cache .ruff_cache
