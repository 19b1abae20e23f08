"""The pool file: which annotators (LLMs) tag the documents, and who supervises.

See docs/pool-file.md for the format. ``load_pool(path)`` validates the whole file and
turns every problem into a one-line error naming the file and the line. API keys are
never in the file: ``api_key_env`` names the environment variable that holds the key,
and :meth:`Pool.check_env` checks that every such variable is set before any call.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from diziner.errors import ConfigError, InputError

ID_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
LOCAL_MODELS = ("smollm2-135m", "gemma-3-270m")
STRUCTURED_MODES = ("json_schema", "json_object_schema", "grammar", "ollama_format", "none")


class Price(BaseModel):
    """USD per million tokens."""

    model_config = ConfigDict(extra="forbid")
    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        return (tokens_in * self.input_per_mtok + tokens_out * self.output_per_mtok) / 1_000_000


class BackendConfig(BaseModel):
    """What it takes to call one model: shared by annotators and the LLM supervisor."""

    model_config = ConfigDict(extra="forbid")

    backend: str
    model: str = ""
    base_url: str | None = None
    api_key_env: str | None = None
    max_concurrency: int = Field(default=8, ge=1)
    structured_output: Literal["json_schema", "json_object_schema", "grammar", "ollama_format", "none"] = "json_schema"
    endpoint: Literal["chat", "completion"] | None = None  # None: completion for fewshot, else chat
    timeout_s: float = Field(default=60.0, gt=0)
    max_retries: int = Field(default=4, ge=0, le=20)
    params: dict[str, Any] = Field(default_factory=dict)
    price: Price | None = None
    # local backend only
    n_threads: int | None = Field(default=None, ge=1)
    n_ctx: int = Field(default=4096, ge=256)
    reproducible: bool = True  # greedy output independent of earlier calls (llama.cpp batch effects)

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, v: str | None) -> str | None:
        # The value is never echoed: a user may have pasted the key itself here.
        if v is not None and not ENV_NAME_RE.match(v):
            raise ValueError(
                "must be the NAME of an environment variable (letters, digits, _), not a key; value not shown"
            )
        return v

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://", v):
            raise ValueError("base_url must start with http:// or https://")
        return v.rstrip("/") if v else v

    def _backend_checks(self) -> None:
        from diziner.llm.factory import backend_names

        names = backend_names()
        if self.backend not in names:
            raise ValueError(f"unknown backend {self.backend!r} (known: {', '.join(sorted(names))})")
        if self.backend == "local":
            if self.model not in LOCAL_MODELS and not self.model.endswith(".gguf"):
                raise ValueError(
                    f"local model {self.model!r} is not one of {', '.join(LOCAL_MODELS)} (or a path to a .gguf file)"
                )
            if self.base_url or self.api_key_env:
                raise ValueError("a local model takes no base_url or api_key_env")
        else:
            if not self.model:
                raise ValueError(f"backend {self.backend!r} needs a model")
            if self.n_threads is not None:
                raise ValueError("n_threads is for local models only")
        if self.backend == "anthropic" and self.api_key_env is None:
            self.api_key_env = "ANTHROPIC_API_KEY"
        if self.backend == "openai" and self.base_url is None and self.api_key_env is None:
            self.api_key_env = "OPENAI_API_KEY"  # the hosted OpenAI API


VLLM_ENGINE = "vllm-engine"  # served inside a Ray Data pipeline (diziner annotate --engine ray, docs/scale.md)
_ENGINE_FIELDS = ("engine_kwargs", "replicas", "gpus", "cpus", "accelerator_type")


class AnnotatorConfig(BackendConfig):
    """One annotator of the pool."""

    id: str
    prompt_style: Literal["chat", "fewshot"] = "chat"
    # backend vllm-engine only: vLLM engine replicas inside the Ray pipeline
    engine_kwargs: dict[str, Any] = Field(default_factory=dict)  # vLLM engine arguments (max_model_len, ...)
    replicas: int = Field(default=1, ge=1)
    gpus: int = Field(default=1, ge=0)  # GPUs each replica (tensor_parallel_size x pipeline_parallel_size); 0: vLLM's CPU build
    cpus: float = Field(default=1, gt=0)  # CPUs a CPU replica (gpus: 0) reserves
    accelerator_type: str | None = None  # e.g. H100: schedule the replicas on such GPUs

    @field_validator("id")
    @classmethod
    def _id_ok(cls, v: str) -> str:
        if not ID_RE.match(v):
            raise ValueError(f"id {v!r} may contain only letters, digits, '_', '.', '-'")
        return v

    @model_validator(mode="after")
    def _checks(self) -> "AnnotatorConfig":
        self._backend_checks()
        if self.backend == VLLM_ENGINE:
            if self.base_url or self.api_key_env:
                raise ValueError("a vllm-engine annotator is served inside the Ray pipeline; it takes no base_url "
                                 "or api_key_env")
            tp = self.engine_kwargs.get("tensor_parallel_size", 1)
            pp = self.engine_kwargs.get("pipeline_parallel_size", 1)
            if not (isinstance(tp, int) and isinstance(pp, int) and tp >= 1 and pp >= 1):
                raise ValueError("engine_kwargs tensor_parallel_size and pipeline_parallel_size must be integers >= 1")
            if self.gpus == 0:
                self._cpu_replica_checks(tp, pp)
            elif "gpus" in self.model_fields_set and ("tensor_parallel_size" in self.engine_kwargs
                                                    or "pipeline_parallel_size" in self.engine_kwargs):
                if tp * pp != self.gpus:
                    raise ValueError(f"gpus ({self.gpus}) must equal tensor_parallel_size x pipeline_parallel_size "
                                     f"({tp} x {pp}) of engine_kwargs")
            elif "gpus" not in self.model_fields_set:
                self.gpus = tp * pp
        else:
            given = [f for f in _ENGINE_FIELDS if f in self.model_fields_set]
            if given:
                raise ValueError(f"{', '.join(given)}: only for backend {VLLM_ENGINE!r}")
        if self.endpoint is None:
            self.endpoint = "completion" if self.prompt_style == "fewshot" else "chat"
        return self

    def _cpu_replica_checks(self, tp: int, pp: int) -> None:
        if tp * pp != 1:
            raise ValueError("a CPU replica (gpus: 0) is one process: tensor_parallel_size and "
                             "pipeline_parallel_size must be 1")
        if self.accelerator_type:
            raise ValueError("accelerator_type is for GPU replicas, not gpus: 0")


class SupervisorConfig(BackendConfig):
    """The supervisor: ``consensus`` (no LLM) or an LLM backend."""

    backend: str = "consensus"
    id: str = "supervisor"

    @model_validator(mode="after")
    def _checks(self) -> "SupervisorConfig":
        if self.backend != "consensus":
            self._backend_checks()
        if self.endpoint is None:
            self.endpoint = "chat"
        return self


class Pool(BaseModel):
    model_config = ConfigDict(extra="forbid")

    annotators: list[AnnotatorConfig] = Field(min_length=1)
    supervisor: SupervisorConfig = Field(default_factory=SupervisorConfig)
    global_concurrency: int = Field(default=64, ge=1)
    # the delivered aggregation for this pool (consensus | union | vote:X | reliability[:label]);
    # None = the project default; a command-line --aggregation or --min-support wins
    aggregation: str | None = None

    _source: str | None = PrivateAttr(default=None)
    _lines: dict[tuple, int] = PrivateAttr(default_factory=dict)

    def annotation_params(self) -> dict[str, dict[str, Any]]:
        """Annotator id -> its ``params`` (those that set any): they override diziner's annotation
        defaults (greedy decoding, an output budget sized to ``max_mentions``) in every engine."""
        return {a.id: dict(a.params) for a in self.annotators if a.params}

    @field_validator("aggregation")
    @classmethod
    def _known_aggregation(cls, v: str | None) -> str | None:
        if v is None:
            return v
        from diziner.aggregation import Aggregation
        from diziner.errors import DizinerError

        try:
            return str(Aggregation.parse(v))
        except DizinerError as e:
            raise ValueError(str(e)) from None

    @model_validator(mode="after")
    def _unique_ids(self) -> "Pool":
        seen: set[str] = set()
        for a in self.annotators:
            if a.id in seen:
                raise ValueError(f"duplicate annotator id {a.id!r}")
            seen.add(a.id)
        return self

    def annotator(self, annotator_id: str) -> AnnotatorConfig:
        for a in self.annotators:
            if a.id == annotator_id:
                return a
        raise KeyError(annotator_id)

    @property
    def ids(self) -> list[str]:
        return [a.id for a in self.annotators]

    def _where(self, loc: tuple) -> str:
        where = self._source or "<pool>"
        line = self._lines.get(loc)
        return f"{where}:{line}" if line else where

    def check_env(self, environ: dict[str, str] | None = None) -> None:
        """Every ``api_key_env`` is set (and non-empty); else one-line ConfigError with file:line."""
        env = os.environ if environ is None else environ
        configs: list[tuple[tuple, BackendConfig, str]] = [
            (("annotators", i, "api_key_env"), a, f"annotator {a.id!r}") for i, a in enumerate(self.annotators)
        ]
        if self.supervisor.backend != "consensus":
            configs.append((("supervisor", "api_key_env"), self.supervisor, "the supervisor"))
        for loc, cfg, who in configs:
            name = cfg.api_key_env
            if name and not env.get(name):
                raise ConfigError(
                    f"{self._where(loc)}: environment variable {name} (api_key_env of {who}) is not set",
                    hint=f"export {name}=... before running",
                )

    def public_summary(self) -> dict[str, Any]:
        """What a run directory may record: ids, backends, models, URLs; never keys."""
        out = {
            "annotators": [
                {"id": a.id, "backend": a.backend, "model": a.model, "base_url": a.base_url,
                 "prompt_style": a.prompt_style, "structured_output": a.structured_output,
                 **({"params": dict(a.params)} if a.params else {})}  # only when set: older runs stay resumable
                for a in self.annotators
            ],
            "supervisor": {"backend": self.supervisor.backend, "model": self.supervisor.model or None},
            "global_concurrency": self.global_concurrency,
        }
        return out


def _line_table(text: str) -> dict[tuple, int]:
    """Line numbers of the pool's interesting keys, for errors raised after validation."""
    import yaml

    out: dict[tuple, int] = {}
    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return out
    if not isinstance(root, yaml.MappingNode):
        return out
    for k, v in root.value:
        out[(k.value,)] = k.start_mark.line + 1
        if k.value == "annotators" and isinstance(v, yaml.SequenceNode):
            for i, item in enumerate(v.value):
                out[("annotators", i)] = item.start_mark.line + 1
                if isinstance(item, yaml.MappingNode):
                    for kk, vv in item.value:
                        out[("annotators", i, kk.value)] = vv.start_mark.line + 1
        if k.value == "supervisor" and isinstance(v, yaml.MappingNode):
            for kk, vv in v.value:
                out[("supervisor", kk.value)] = vv.start_mark.line + 1
    return out


def load_pool(path: str | Path) -> Pool:
    """Read and validate a pool file. Errors are one line: ``file:line: problem``."""
    import yaml

    from diziner.schema import load_yaml_model

    p = Path(path)
    # Duplicate ids are reported at the line of the second occurrence, before pydantic sees them.
    try:
        text = p.read_text(encoding="utf-8")
        data = yaml.safe_load(text)
    except Exception:
        text, data = "", None  # load_yaml_model reports the problem precisely
    lines = _line_table(text) if text else {}
    if isinstance(data, dict) and isinstance(data.get("annotators"), list):
        seen: dict[str, int] = {}
        for i, a in enumerate(data["annotators"]):
            if isinstance(a, dict) and isinstance(a.get("id"), str):
                if a["id"] in seen:
                    raise InputError(p, lines.get(("annotators", i, "id")),
                                     f"annotators.{i}.id: duplicate annotator id {a['id']!r} "
                                     f"(first used by annotators.{seen[a['id']]})")
                seen[a["id"]] = i
    pool = load_yaml_model(p, Pool, "pool")
    assert isinstance(pool, Pool)
    pool._source = str(p)
    pool._lines = lines
    return pool


def pool_from_dict(data: dict[str, Any], source: str = "<pool>") -> Pool:
    """Build a pool from a mapping (tests, programmatic use); errors as ConfigError."""
    from pydantic import ValidationError

    try:
        pool = Pool.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err.get("loc", ())) or "(top level)"
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        raise ConfigError(f"{source}: {where}: {msg}") from None
    pool._source = source
    return pool


__all__ = ["Price", "BackendConfig", "AnnotatorConfig", "SupervisorConfig", "Pool", "load_pool", "pool_from_dict",
           "LOCAL_MODELS", "STRUCTURED_MODES", "VLLM_ENGINE"]
