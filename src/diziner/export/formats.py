"""Export writers (and the readers that check them): Label Studio, doccano, Prodigy,
Argilla-style JSONL, spaCy DocBin, CoNLL BIO, JSONL spans and the guideline as Markdown.

Every writer takes an :class:`~diziner.export.source.ExportSource` and an output path,
writes atomically and returns a small dict of counts. The readers turn each format back
into ``{doc id or position: [(start, end, label), ...]}`` for round-trip tests.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from diziner import atomic
from diziner.atomic import iter_jsonl
from diziner.errors import ConfigError, InputError
from diziner.export.source import ExportSource, ExportSpan

__all__ = [
    "FORMATS",
    "export",
    "read_argilla",
    "read_doccano",
    "read_label_studio",
    "read_prodigy",
    "read_spacy",
    "write_argilla",
    "write_conll",
    "write_doccano",
    "write_guideline_md",
    "write_jsonl",
    "write_label_studio",
    "write_prodigy",
    "write_spacy",
]

SpanTriples = dict[str, list[tuple[int, int, str]]]


def _atomic_bytes(path: Path, data: bytes) -> None:
    atomic.write_bytes(path, data)


def _atomic_text(path: Path, text: str) -> None:
    _atomic_bytes(path, text.encode("utf-8"))


def _jsonl(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def _counts(src: ExportSource, **more: Any) -> dict[str, Any]:
    return {"documents": len(src.docs), "spans": sum(len(d.spans) for d in src.docs),
            "skipped_failed": len(src.skipped), **more}


# --------------------------------------------------------------------------- Label Studio

def write_label_studio(src: ExportSource, out: Path) -> dict[str, Any]:
    """A JSON list of tasks; the spans are ``predictions`` (pre-annotations) with a score each.

    Matching labeling config: ``<Labels name="label" toName="text">`` over ``<Text name="text" value="$text"/>``.
    """
    tasks = []
    for n, d in enumerate(src.docs, 1):
        result = []
        for i, s in enumerate(d.spans):
            r: dict[str, Any] = {"id": f"{d.id}-{i}", "from_name": "label", "to_name": "text", "type": "labels",
                                 "origin": "prediction",
                                 "value": {"start": s.start, "end": s.end, "text": s.text, "labels": [s.label]}}
            if s.score is not None:
                r["score"] = s.score
            result.append(r)
        scores = [s.score for s in d.spans if s.score is not None]
        pred: dict[str, Any] = {"model_version": src.model_version, "result": result}
        if scores:
            pred["score"] = round(sum(scores) / len(scores), 6)
        tasks.append({"id": n, "data": {"text": d.text, "doc_id": d.id, **({"meta": d.meta} if d.meta else {})},
                      "predictions": [pred]})
    _atomic_text(out, json.dumps(tasks, ensure_ascii=False, indent=1) + "\n")
    return _counts(src)


def read_label_studio(path: Path) -> SpanTriples:
    tasks = json.loads(path.read_text(encoding="utf-8"))
    out: SpanTriples = {}
    for t in tasks:
        did = str(t["data"].get("doc_id", t.get("id")))
        spans = []
        for p in t.get("predictions") or []:
            for r in p.get("result") or []:
                v = r["value"]
                for lab in v["labels"]:
                    spans.append((int(v["start"]), int(v["end"]), str(lab)))
        out[did] = sorted(spans)
    return out


# --------------------------------------------------------------------------- doccano

def write_doccano(src: ExportSource, out: Path) -> dict[str, Any]:
    """doccano sequence-labeling JSONL: ``{"text", "label": [[start, end, label], ...], "doc_id"}``."""
    rows = [{"text": d.text, "label": [[s.start, s.end, s.label] for s in d.spans], "doc_id": d.id} for d in src.docs]
    _atomic_text(out, _jsonl(rows))
    return _counts(src)


def read_doccano(path: Path) -> SpanTriples:
    out: SpanTriples = {}
    for n, r in iter_jsonl(path):
        out[str(r.get("doc_id", n - 1))] = sorted((int(a), int(b), str(c)) for a, b, c in r.get("label", []))
    return out


# --------------------------------------------------------------------------- Prodigy

def prodigy_tokens(text: str) -> list[dict[str, Any]]:
    """Prodigy's ``tokens``: ``{"text","start","end","id","ws"}`` from diziner's own tokenizer."""
    from diziner.corpus.model import tokenize

    offs = tokenize(text)
    return [{"text": text[a:b], "start": a, "end": b, "id": i,
             "ws": b < len(text) and text[b:b + 1].isspace()} for i, (a, b) in enumerate(offs)]


def write_prodigy(src: ExportSource, out: Path) -> dict[str, Any]:
    """Prodigy JSONL: ``{"text", "tokens", "spans": [{"start","end","label","token_start","token_end"}],
    "meta": {"id", "source", ...}}``; ``ner.manual`` needs the tokens and the token indexes of
    each span (inclusive end); a span that does not fall on token boundaries is widened to them."""
    rows = []
    for d in src.docs:
        toks = prodigy_tokens(d.text)
        spans = []
        for s in d.spans:
            inside = [t["id"] for t in toks if t["end"] > s.start and t["start"] < s.end]
            sp: dict[str, Any] = {"start": s.start, "end": s.end, "label": s.label}
            if inside:
                sp.update(token_start=inside[0], token_end=inside[-1])
            spans.append(sp)
        rows.append({"text": d.text, "tokens": toks, "spans": spans,
                     "meta": {"id": d.id, "source": src.model_version, **{k: v for k, v in d.meta.items()
                                                                         if isinstance(v, (str, int, float, bool))}}})
    _atomic_text(out, _jsonl(rows))
    return _counts(src)


def read_prodigy(path: Path) -> SpanTriples:
    out: SpanTriples = {}
    for n, r in iter_jsonl(path):
        out[str((r.get("meta") or {}).get("id", n - 1))] = sorted(
            (int(s["start"]), int(s["end"]), str(s["label"])) for s in r.get("spans", []))
    return out


# --------------------------------------------------------------------------- Argilla-style

def write_argilla(src: ExportSource, out: Path) -> dict[str, Any]:
    """Argilla 2.x records (``rg.Record.from_dict``): a ``text`` field and a suggestion for the
    span question ``spans`` (value, per-span score = support weight where there is one, agent =
    model version); the hotspot flags go to metadata (``hotspot_spans``: their indexes in
    ``value``), which Argilla's suggestion model does not take."""
    rows = []
    for d in src.docs:
        sugg: dict[str, Any] = {"type": "model", "agent": src.model_version,
                                "value": [{"start": s.start, "end": s.end, "label": s.label} for s in d.spans]}
        if d.spans and all(s.score is not None for s in d.spans):  # one annotator or a plain file: no scores
            sugg["score"] = [float(s.score) for s in d.spans]  # type: ignore[arg-type]
        rows.append({"id": d.id, "fields": {"text": d.text}, "suggestions": {"spans": sugg},
                     "metadata": {"source": src.source, "n_spans": len(d.spans),
                                  "n_hotspot_spans": sum(1 for s in d.spans if s.hotspot),
                                  "hotspot_spans": [i for i, s in enumerate(d.spans) if s.hotspot]}})
    _atomic_text(out, _jsonl(rows))
    return _counts(src)


def read_argilla(path: Path) -> SpanTriples:
    out: SpanTriples = {}
    for _, r in iter_jsonl(path):
        sg = r.get("suggestions", {})
        suggestions = list(sg.values()) if isinstance(sg, dict) else sg  # 2.x: keyed by question
        spans = [(int(v["start"]), int(v["end"]), str(v["label"])) for s in suggestions for v in s.get("value", [])]
        out[str(r["id"])] = sorted(spans)
    return out


# --------------------------------------------------------------------------- spaCy

def _import_spacy() -> Any:
    try:
        import spacy
    except ImportError:
        raise ConfigError("the spaCy export needs spaCy, which is not installed",
                          hint='pip install "diziner[spacy]" (or: pip install spacy)') from None
    return spacy


def write_spacy(src: ExportSource, out: Path) -> dict[str, Any]:
    """A spaCy ``DocBin`` (``.spacy``) made with ``spacy.blank("xx")``.

    Spans are aligned to spaCy tokens with ``char_span(..., alignment_mode="expand")``
    (a span that cuts a token grows to the whole token; counted as ``expanded``).
    Every span goes to ``doc.spans["diziner"]``; ``doc.ents`` holds the non-overlapping
    ones (longest first; the others are counted as ``not_in_ents``). The document id is
    stored in ``doc.user_data["id"]``.
    """
    spacy = _import_spacy()
    from spacy.tokens import DocBin
    from spacy.util import filter_spans

    nlp = spacy.blank("xx")
    db = DocBin(store_user_data=True)
    expanded = unalignable = not_in_ents = 0
    for d in src.docs:
        doc = nlp.make_doc(d.text)
        spans = []
        for s in d.spans:
            sp = doc.char_span(s.start, s.end, label=s.label, alignment_mode="expand")
            if sp is None:
                unalignable += 1
                continue
            if (sp.start_char, sp.end_char) != (s.start, s.end):
                expanded += 1
            spans.append(sp)
        doc.spans["diziner"] = spans
        ents = filter_spans(spans)
        not_in_ents += len(spans) - len(ents)
        doc.ents = ents
        doc.user_data["id"] = d.id
        db.add(doc)
    _atomic_bytes(out, db.to_bytes())
    return _counts(src, expanded=expanded, unalignable=unalignable, not_in_ents=not_in_ents)


def read_spacy(path: Path, key: str = "diziner") -> SpanTriples:
    spacy = _import_spacy()
    from spacy.tokens import DocBin

    nlp = spacy.blank("xx")
    db = DocBin().from_bytes(path.read_bytes())
    out: SpanTriples = {}
    for n, doc in enumerate(db.get_docs(nlp.vocab)):
        did = str(doc.user_data.get("id", n))
        group = doc.spans.get(key, doc.ents)
        out[did] = sorted((s.start_char, s.end_char, s.label_) for s in group)
    return out


# --------------------------------------------------------------------------- CoNLL / JSONL (diziner's own)

def _corpus(src: ExportSource):  # type: ignore[no-untyped-def]
    from diziner.corpus.model import AnnotatedCorpus, Document, Span

    docs = [Document(d.id, d.text) for d in src.docs]
    spans = {d.id: [Span(d.id, s.start, s.end, s.label, s.text) for s in d.spans] for d in src.docs}
    return AnnotatedCorpus(docs, spans)


def write_conll(src: ExportSource, out: Path) -> dict[str, Any]:
    """``token TAB BIO-tag`` lines, a blank line between documents (diziner.corpus.writers)."""
    from diziner.corpus.writers import write_conll as _write

    dropped = _write(_corpus(src), out, scheme="bio")
    return _counts(src, dropped_overlapping=dropped)


def write_jsonl(src: ExportSource, out: Path) -> dict[str, Any]:
    """``{"id","text","spans":[{"start","end","label","text", "support", "hotspot"}]}`` per line."""
    from diziner.corpus.writers import write_jsonl as _write

    extra: dict[tuple, dict[str, Any]] = {}
    for d in src.docs:
        for s in d.spans:
            f: dict[str, Any] = {}
            if s.score is not None or s.annotators:
                f["support"] = {"annotators": list(s.annotators), "weight": s.score}
            if s.hotspot:
                f["hotspot"] = True
            if f:
                extra[(d.id, s.start, s.end, s.label)] = f
    _write(_corpus(src), out, span_fields=extra)
    return _counts(src)


# --------------------------------------------------------------------------- guideline

def write_guideline_md(run: Path, out: Path) -> dict[str, Any]:
    """The run's selected guideline (``final/guideline.yaml``) as Markdown."""
    from diziner.guideline import load_guideline

    gpath = run / "final" / "guideline.yaml"
    if not run.is_dir() or not gpath.is_file():
        raise InputError(gpath, None, "no final guideline (the guideline export needs a finished refine run directory)")
    g = load_guideline(gpath)
    from diziner.guideline_render import render_markdown

    _atomic_text(out, render_markdown(g))
    return {"iteration": g.iteration, "common_instructions": len(g.all_common()),
            "model_specific": {a: len(g.for_annotator(a)) for a in g.model_specific}}


def write_label_studio_config(run: Path, out: Path) -> dict[str, Any]:
    """The Label Studio labeling config for the run's schema, matching the ``label-studio``
    export: ``<Labels name="label" toName="text">`` (one ``<Label>`` per schema label, its
    definition as the hint) over ``<Text name="text" value="$text"/>``."""
    from xml.sax.saxutils import quoteattr

    from diziner.schema import load_schema

    spath = run / "schema.yaml"
    if not run.is_dir() or not spath.is_file():
        raise InputError(spath, None, "no schema.yaml (the labeling config needs a refine run directory)")
    schema = load_schema(spath)
    palette = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45", "#fabed4",
               "#469990", "#dcbeff", "#9a6324"]
    lines = ["<View>", '  <Labels name="label" toName="text">']
    for i, lab in enumerate(schema.labels):
        hint = " ".join(str(getattr(lab, "definition", "") or "").split())
        lines.append(f"    <Label value={quoteattr(lab.name)} background={quoteattr(palette[i % len(palette)])}"
                     + (f" hint={quoteattr(hint)}" if hint else "") + "/>")
    lines += ["  </Labels>", '  <Text name="text" value="$text"/>', "</View>", ""]
    _atomic_text(out, "\n".join(lines))
    return {"labels": schema.label_names}


# --------------------------------------------------------------------------- dispatch

FORMATS: dict[str, Callable[[ExportSource, Path], dict[str, Any]]] = {
    "label-studio": write_label_studio,
    "doccano": write_doccano,
    "prodigy": write_prodigy,
    "argilla": write_argilla,
    "spacy": write_spacy,
    "conll": write_conll,
    "jsonl": write_jsonl,
}
ALL_FORMATS = [*FORMATS, "guideline-md", "label-studio-config"]


def doubtful(src: ExportSource, max_support: float | None = None, hotspots_only: bool = False) -> ExportSource:
    """Only the documents a human should look at: those with a span whose support weight is
    ≤ ``max_support`` and/or (``hotspots_only``) a span in a hotspot. Every span of a kept
    document stays, so the reviewer sees the whole reading. Without either filter, all."""
    if max_support is None and not hotspots_only:
        return src
    if max_support is not None and not 0.0 <= max_support <= 1.0:
        raise ConfigError(f"--max-support must be within [0, 1] (got {max_support:g})")

    def wanted(sp: ExportSpan) -> bool:
        low = max_support is not None and sp.score is not None and sp.score <= max_support + 1e-9
        hot = hotspots_only and sp.hotspot
        if max_support is not None and hotspots_only:
            return low or hot
        return low if max_support is not None else hot

    kept = [d for d in src.docs if any(wanted(sp) for sp in d.spans)]
    return ExportSource(kept, src.source, src.path, run=src.run, skipped=src.skipped)


def export(path: str | Path, fmt: str, out: str | Path, source: str = "consensus", force: bool = False,
           max_support: float | None = None, hotspots_only: bool = False) -> dict[str, Any]:
    """Export a run (or a JSONL spans file) to ``fmt``; returns counts.

    Refuses to replace the input file, and an existing ``out`` unless ``force``. With
    ``max_support`` / ``hotspots_only`` only the doubtful documents are exported (:func:`doubtful`).
    """
    from diziner.export.source import load_source

    p, o = Path(path), Path(out)
    if fmt not in ALL_FORMATS:
        raise ConfigError(f"unknown export format {fmt!r} (choose from: {', '.join(ALL_FORMATS)})")
    if o.is_dir():
        raise InputError(o, None, "output path is a directory")
    if p.exists() and o.exists() and (o.resolve() == p.resolve() or (p.is_dir() and p.resolve() in o.resolve().parents
                                                                    and o.suffix in (".jsonl", ".json", ".yaml"))):
        raise InputError(o, None, "is an input file; refusing to overwrite it")
    if o.exists() and not force:
        raise InputError(o, None, "already exists; not overwriting", hint="pass --force to replace it")
    if fmt == "guideline-md":
        res = write_guideline_md(p, o)
        return {"format": fmt, "out": str(o), **res}
    if fmt == "label-studio-config":
        return {"format": fmt, "out": str(o), **write_label_studio_config(p, o)}
    src = load_source(p, source)
    n_all = len(src.docs)
    src = doubtful(src, max_support, hotspots_only)
    res = FORMATS[fmt](src, o)
    extra = {} if len(src.docs) == n_all else {"selected_documents": len(src.docs), "of_documents": n_all}
    return {"format": fmt, "out": str(o), "source": src.source, "model_version": src.model_version, **res, **extra}

