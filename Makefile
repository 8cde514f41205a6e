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
# vLLM comes without its GPU stack too (its EngineArgs parser imports on a CPU torch), and
# megatron-core for its own layer-offset / pipeline-layout functions (Megatron-LM's training
# package, parse_args/validate_args, is not on PyPI: point MEGATRON_LM at a core_v0.14.0
# checkout to run them too);
# TensorRT-LLM (no PyPI wheel) is checked against option lists quoted from its source.
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
	# vLLM's own EngineArgs parser: the wheel without its CUDA stack (--no-deps), plus what
	# importing vllm.engine.arg_utils needs (transformers pinned where vLLM and SGLang overlap).
	$(EXPORTS_BIN)/pip install --quiet --no-deps 'vllm==0.34.0' 'megatron-core==0.14.0'
	$(EXPORTS_BIN)/pip install --quiet 'huggingface_hub==2.5.0' 'regex==2026.12.2' 'transformers==5.19.0'
	$(EXPORTS_BIN)/pip install --quiet --no-deps 'cachetools==8.0.3' 'cbor2==6.3.0' \
		'cloudpickle==3.1.3' 'uvloop==0.23.0' 'prometheus_client==0.26.0' 'llguidance==1.9.1' \
		'xgrammar==0.2.7' 'apache-tvm-ffi==0.1.15.post2' 'six==1.17.0'
	touch $(EXPORTS_STAMP)

check-exports: $(EXPORTS_STAMP)
	$(EXPORTS_BIN)/python benchmarks/check_exports.py --require deepspeed,sglang,torch,vllm,megatron

clean:
	rm -rf $(VENV) $(EXPORTS_VENV) .pytest_cache .mypy_cache .ruff_cache
