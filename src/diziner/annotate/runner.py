"""The cross-annotation runner: every annotator annotates every document.

All (annotator, document) pairs run concurrently (``asyncio.gather``); each client
enforces its own concurrency limit. Per pair: chunk the document, build the request,
call, parse leniently, re-ask on an unreadable answer (``reask`` times), ground the
mentions to offsets, merge chunk spans. The outcome is a :class:`DocResult` — ``ok``
with spans, or ``failed`` with the reason (an :class:`~diziner.errors.LLMCallError`, or
an answer still unreadable after the re-asks): a failure is never an empty annotation.
"""
from __future__ import annotations

import asyncio
import inspect
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable, Mapping, Sequence

from diziner.annotate.chunk import chunk_text, merge_chunk_spans
from diziner.annotate.ground import ground_mentions
from diziner.annotate.parse import LabelMatcher, parse_mentions
from diziner.annotate.prompt import build_reask_request, build_request, template_id
from diziner.corpus.model import Document, Span
from diziner.errors import DizinerError, InputError, LLMCallError
from diziner.guideline import Guideline
from diziner.llm.base import LLMClient

__all__ = ["DocResult", "AnnotatorRun", "read_answered_spans", "annotate_document", "annotate_documents", "annotate_documents_sync",
           "guideline_runs", "GROUNDING_KEYS"]

GROUNDING_KEYS = ("exact", "fuzzy", "ungrounded", "duplicate")
OnResult = Callable[[str, "DocResult"], Any | Awaitable[Any]]


def _zero_counts() -> dict[str, int]:
    return {k: 0 for k in GROUNDING_KEYS}


@dataclass
class DocResult:
    """One annotator's annotation of one document (a line of ``annotations/<annotator>.jsonl``)."""

    doc_id: str
    status: str  # "ok" | "failed"
    reason: str | None = None
    spans: list[Span] = field(default_factory=list)
    grounding: dict[str, int] = field(default_factory=_zero_counts)
    dropped_labels: int = 0
    parse_failures: int = 0  # unreadable answers (each one led to a re-ask or to failure)
    calls: int = 0  # LLM calls made (cached ones included)
    text: str = ""
    chunks: int = 1
    oversized_sentences: int = 0  # sentences split inside because they exceeded the chunk budget
    truncated: int = 0  # answers cut off (max_tokens) whose complete mentions were kept
    prompt: str = ""  # template id and version, e.g. annotate_chat.v1

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict in the per-line format of docs/run-directory.md (plus extra counts)."""
        return {
            "id": self.doc_id, "text": self.text, "status": self.status, "reason": self.reason,
            "spans": [s.to_dict() for s in self.spans],
            "grounding": dict(self.grounding), "dropped_labels": self.dropped_labels,
            "parse_failures": self.parse_failures, "calls": self.calls, "chunks": self.chunks,
            "oversized_sentences": self.oversized_sentences, "truncated": self.truncated, "prompt": self.prompt,
        }

    def to_line(self) -> str:
        """One JSONL line (no trailing newline)."""
        return json.dumps(self.to_json(), ensure_ascii=False)

    @classmethod
    def from_json(cls, data: dict[str, Any] | str, *, path: str | None = None, line: int | None = None) -> "DocResult":
        """Read a dict or JSONL line back; bad content raises InputError naming path and line."""
        r = _LineReader(path, line)
        d = r.record(data)
        doc_id, status, text = r.head(d)
        reason = d.get("reason")
        return cls(doc_id=doc_id, status=status, reason=reason if isinstance(reason, str) else None,
                   spans=r.spans(d, doc_id, text), grounding=r.grounding(d), dropped_labels=r.num(d, "dropped_labels"),
                   parse_failures=r.num(d, "parse_failures"), calls=r.num(d, "calls"), text=text,
                   chunks=r.num(d, "chunks", 1), oversized_sentences=r.num(d, "oversized_sentences"),
                   truncated=r.num(d, "truncated"), prompt=str(d.get("prompt", "")))


@dataclass
class _LineReader:
    """Checks the fields of one annotation line; every problem is an InputError at ``path:line``."""

    path: str | None
    line: int | None

    def bad(self, problem: str) -> InputError:
        return InputError(self.path, self.line, problem)

    def record(self, data: dict[str, Any] | str) -> dict[str, Any]:
        if isinstance(data, str):
            try:
                data = json.loads(data)
            except json.JSONDecodeError as e:
                raise self.bad(f"not valid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(data, dict):
            raise self.bad("an annotation line must be a JSON object")
        return data

    def head(self, data: dict[str, Any]) -> tuple[str, str, str]:
        """(id, status, text)."""
        doc_id = data.get("id")
        if not isinstance(doc_id, str) or not doc_id:
            raise self.bad('missing or empty "id"')
        status = data.get("status", "ok")
        if status not in ("ok", "failed"):
            raise self.bad(f'"status" must be "ok" or "failed", not {status!r}')
        text = data.get("text", "")
        if not isinstance(text, str):
            raise self.bad('"text" must be a string')
        return doc_id, status, text

    def spans(self, data: dict[str, Any], doc_id: str, text: str) -> list[Span]:
        raw_spans = data.get("spans", [])
        if not isinstance(raw_spans, list):
            raise self.bad('"spans" must be a list')
        return [self.span(i, sp, doc_id, text) for i, sp in enumerate(raw_spans, 1)]

    def span(self, i: int, sp: Any, doc_id: str, text: str) -> Span:
        if not isinstance(sp, dict):
            raise self.bad(f"span {i} is not an object")
        s, e, lab = sp.get("start"), sp.get("end"), sp.get("label")
        if not (isinstance(s, int) and isinstance(e, int)) or isinstance(s, bool) or isinstance(e, bool):
            raise self.bad(f'span {i}: "start" and "end" must be integers')
        if not isinstance(lab, str) or not lab:
            raise self.bad(f'span {i}: missing "label"')
        if not 0 <= s < e or (text and e > len(text)):
            raise self.bad(f"span {i}: offsets {s}-{e} are out of range")
        stext = text[s:e] if text else sp.get("text", "")
        if text and "text" in sp and sp["text"] != stext:
            raise self.bad(f"span {i}: text {sp['text']!r} does not match the document at {s}-{e} ({stext!r})")
        return Span(doc_id, s, e, lab, stext if isinstance(stext, str) else "")

    def grounding(self, data: dict[str, Any]) -> dict[str, int]:
        grounding = _zero_counts()
        g = data.get("grounding") or {}
        if not isinstance(g, dict):
            raise self.bad('"grounding" must be an object')
        grounding.update({str(k): v for k, v in g.items() if isinstance(v, int)})
        return grounding

    def num(self, data: dict[str, Any], key: str, default: int = 0) -> int:
        v = data.get(key, default)
        if not isinstance(v, int) or isinstance(v, bool):
            raise self.bad(f'"{key}" must be an integer')
        return v


def read_answered_spans(path: str | Path) -> dict[str, list[Span]]:
    """Document id → spans of every document an annotator file (``DocResult`` lines, as
    ``annotate``/``bench`` write them) answered; failed documents are left out. A bad line
    is the project's one-line input error naming the file and line."""
    from diziner.atomic import iter_jsonl

    out: dict[str, list[Span]] = {}
    for i, obj in iter_jsonl(path):
        r = DocResult.from_json(obj, path=str(path), line=i)
        if r.ok:
            out[r.doc_id] = list(r.spans)
    return out


@dataclass
class AnnotatorRun:
    """All results of one annotator, keyed by document id (in document order)."""

    annotator_id: str
    prompt_style: str = "chat"
    prompt: str = ""
    results: dict[str, DocResult] = field(default_factory=dict)

    @classmethod
    def from_file(cls, path: str | Path, annotator_id: str | None = None) -> "AnnotatorRun":
        """The run an annotator file holds (``DocResult`` lines, as ``annotate``/``bench`` write them;
        id: the file's stem unless given). A bad line is the project's one-line input error."""
        from diziner.atomic import iter_jsonl

        run = cls(annotator_id or Path(path).stem)
        for i, obj in iter_jsonl(path):
            r = DocResult.from_json(obj, path=str(path), line=i)
            run.results[r.doc_id] = r
        return run

    def cover(self, documents: Sequence[Document]) -> "AnnotatorRun":
        """Keep one result per document, in their order; a document the run lacks is one it did not
        answer (failed, reason ``absent``). Returns the run."""
        self.results = {d.id: self.results.get(d.id) or DocResult(d.id, "failed", "absent", text=d.text)
                        for d in documents}
        return self

    def spans_by_doc(self) -> dict[str, list[Span]]:
        """Spans of the documents annotated successfully; failed documents are absent (not empty)."""
        return {d: list(r.spans) for d, r in self.results.items() if r.ok}

    def failed(self) -> dict[str, str]:
        """Document id -> reason, for the failed documents."""
        return {d: r.reason or "" for d, r in self.results.items() if not r.ok}

    def summary(self) -> dict[str, Any]:
        """Counts over all documents: ok/failed, grounding statuses, dropped labels, parse failures."""
        res = list(self.results.values())
        g = _zero_counts()
        for r in res:
            for k, v in r.grounding.items():
                g[k] = g.get(k, 0) + v
        return {
            "annotator": self.annotator_id, "prompt": self.prompt,
            "documents": len(res), "ok": sum(r.ok for r in res), "failed": sum(not r.ok for r in res),
            "spans": sum(len(r.spans) for r in res if r.ok), **g,
            "dropped_labels": sum(r.dropped_labels for r in res),
            "parse_failures": sum(r.parse_failures for r in res),
            "truncated": sum(r.truncated for r in res),
            "oversized_sentences": sum(r.oversized_sentences for r in res),
            "calls": sum(r.calls for r in res),
        }


async def annotate_document(document: Document, guideline: Guideline, annotator_id: str, client: LLMClient,
                            prompt_style: str, *, iteration: int | None = None, reask: int = 1,
                            max_mentions: int = 32, max_chunk_tokens: int = 1500,
                            other_annotators: Iterable[str] = (), params: dict[str, Any] | None = None,
                            count_tokens: Callable[[str], int] | None = None) -> DocResult:
    """Annotate one document with one annotator; never raises for an LLM failure."""
    labels = guideline.schema_.label_names
    matcher = LabelMatcher(labels)
    tid = template_id(prompt_style)
    out = DocResult(doc_id=document.id, status="ok", text=document.text, prompt=tid)
    if not document.text.strip():
        out.chunks = 0
        return out
    plan = chunk_text(document.text, max_chunk_tokens, count_tokens=count_tokens)
    out.chunks = len(plan.chunks)
    out.oversized_sentences = plan.oversized_sentences
    others = list(other_annotators)
    per_chunk = []
    for chunk in plan.chunks:
        where = f" (chunk {chunk.index + 1} of {len(plan.chunks)})" if len(plan.chunks) > 1 else ""
        req = build_request(guideline, annotator_id, prompt_style, chunk.text, max_mentions=max_mentions,
                            params=params, other_annotators=others, iteration=iteration)
        req = req.model_copy(update={"doc_id": document.id})  # a ledger tag, not part of the cache key
        attempt = 0
        while True:
            try:
                resp = await client.complete(req)
            except LLMCallError as e:
                out.calls += 1
                return _failed(out, f"{e.kind}: {e.reason}{where}")
            out.calls += 1
            parsed = parse_mentions(resp.text, matcher)
            if parsed.ok:
                break
            out.parse_failures += 1
            if attempt >= reask:
                return _failed(out, f"unreadable answer after {attempt + 1} attempt(s): {parsed.error}{where}")
            attempt += 1
            req = build_reask_request(req, resp.text, parsed.error or "not valid JSON", labels=labels, attempt=attempt)
        out.dropped_labels += parsed.dropped_labels
        out.truncated += int(parsed.truncated)
        g = ground_mentions(chunk.text, parsed.mentions, doc_id=document.id)
        for k, v in g.counts.items():
            out.grounding[k] = out.grounding.get(k, 0) + v
        per_chunk.append((chunk, g.spans))
    if len(plan.chunks) == 1 and plan.chunks[0].start == 0:
        out.spans = sorted(per_chunk[0][1], key=lambda s: (s.start, s.end, s.label))
    else:
        out.spans = merge_chunk_spans(per_chunk, document.text)
    return out


def _failed(out: DocResult, reason: str) -> DocResult:
    out.status = "failed"
    out.reason = reason
    out.spans = []
    return out


def guideline_runs(annotator_ids: Iterable[str], guidelines: Sequence[Guideline]) -> dict[str, tuple[str, Guideline]]:
    """Every annotator under every guideline: run id -> (the annotator whose client, prompt style
    and model-specific instructions the run uses, its guideline). The first guideline's runs keep
    the annotator ids; a further guideline's are ``<annotator>@it<its iteration>``, or
    ``<annotator>@companion`` for the companion of iteration 0 (:mod:`diziner.supervise.glossary`),
    or ``<annotator>@g<position>`` when two guidelines share an iteration (pool ids cannot hold ``@``).
    The guidelines must annotate the same labels (one schema)."""
    from diziner.supervise.glossary import is_companion

    ids = list(annotator_ids)
    if not guidelines:
        raise DizinerError("no guideline to annotate with")
    labels = list(guidelines[0].schema_.label_names)
    for g in guidelines[1:]:
        if list(g.schema_.label_names) != labels:
            raise DizinerError(f"the guidelines annotate different labels ({', '.join(labels)} vs "
                               f"{', '.join(g.schema_.label_names)}); every guideline of one run needs the same schema")
    companions = [is_companion(g) for g in guidelines]
    iterations = [g.iteration for g, c in zip(guidelines, companions) if not c]
    plan: dict[str, tuple[str, Guideline]] = {a: (a, guidelines[0]) for a in ids}
    for k, g in enumerate(guidelines[1:], 2):
        if companions[k - 1]:
            tag = "companion" if companions.count(True) == 1 else f"g{k}"
        else:
            tag = f"it{g.iteration}" if iterations.count(g.iteration) == 1 else f"g{k}"
        plan.update({f"{a}@{tag}": (a, g) for a in ids})
    return plan


async def annotate_documents(documents: list[Document], guideline: Guideline,
                             annotators: dict[str, tuple[LLMClient, str]], *, iteration: int | None = None,
                             reask: int = 1, max_mentions: int = 32, max_chunk_tokens: int = 1500,
                             on_result: OnResult | None = None,
                             params: dict[str, dict[str, Any]] | None = None,
                             runs: Mapping[str, tuple[str, Guideline]] | None = None) -> dict[str, AnnotatorRun]:
    """Annotate every document with every annotator, concurrently.

    ``annotators``: id -> (client, prompt style "chat" | "fewshot"). ``on_result(run id,
    DocResult)`` (sync or async) is called as each result arrives, e.g. to append it to a
    JSONL file for resume. ``params``: optional per-annotator overrides of the request params.
    ``runs`` (from :func:`guideline_runs`): run id -> (annotator id, guideline), to annotate with
    several guidelines at once; by default each annotator is one run with ``guideline``. A run's
    request is exactly the one its annotator makes alone with that guideline (same prompt, same
    cache entry). Returns run id -> :class:`AnnotatorRun` with results in document order.
    """
    seen: set[str] = set()
    for d in documents:
        if d.id in seen:
            raise InputError(None, None, f"duplicate document id {d.id!r} in the documents to annotate")
        seen.add(d.id)
    for aid, (_, style) in annotators.items():
        template_id(style)  # raises ConfigError for an unknown style before any call
    plan = dict(runs) if runs is not None else {a: (a, guideline) for a in annotators}
    unknown = sorted({a for a, _ in plan.values()} - set(annotators))
    if unknown:
        raise DizinerError(f"no client for annotator(s) {', '.join(unknown)}")
    ids = list(plan)
    others = list(annotators)
    out = {rid: AnnotatorRun(rid, annotators[a][1], template_id(annotators[a][1])) for rid, (a, _) in plan.items()}
    collected: dict[str, dict[str, DocResult]] = {rid: {} for rid in ids}

    async def one(rid: str, doc: Document) -> None:
        aid, g = plan[rid]
        client, style = annotators[aid]
        res = await annotate_document(doc, g, aid, client, style, iteration=iteration, reask=reask,
                                      max_mentions=max_mentions, max_chunk_tokens=max_chunk_tokens,
                                      other_annotators=others, params=(params or {}).get(aid))
        collected[rid][doc.id] = res
        if on_result is not None:
            r = on_result(rid, res)
            if inspect.isawaitable(r):
                await r

    await asyncio.gather(*(one(rid, d) for rid in ids for d in documents))
    for rid in ids:
        out[rid].results = {d.id: collected[rid][d.id] for d in documents}
    return out


def annotate_documents_sync(documents: list[Document], guideline: Guideline,
                            annotators: dict[str, tuple[LLMClient, str]], **kwargs: Any) -> dict[str, AnnotatorRun]:
    """Blocking wrapper around :func:`annotate_documents` (not for use inside a running event loop)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(annotate_documents(documents, guideline, annotators, **kwargs))
    raise RuntimeError("annotate_documents_sync was called inside a running event loop; await annotate_documents instead")
