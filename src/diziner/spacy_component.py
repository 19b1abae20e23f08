"""A spaCy pipeline component: ``nlp.add_pipe("diziner", config={...})`` sets ``doc.ents``.

    import spacy
    import diziner.spacy_component  # registers the factory (also found by spaCy's entry points)

    nlp = spacy.blank("en")
    nlp.add_pipe("diziner", config={"guideline": "runs/news/final/guideline.yaml",
                                    "pool": "examples/pool-local.yaml"})
    doc = nlp("Ada Lovelace met Grace Hopper in London.")
    doc.ents                       # the delivered spans that do not overlap
    doc.spans["diziner"]           # every delivered span (overlaps kept)
    doc.spans["diziner"].attrs["support"], doc.spans["diziner"].attrs["hotspot"]   # per span

The component is :class:`diziner.api.Annotator` over the doc texts (``nlp.pipe`` sends a
batch at a time). Character spans become token spans with ``alignment_mode="expand"``; a
span that still cannot be placed is left out and counted in ``doc.spans[...].attrs
["unaligned"]``. A doc no annotator could answer keeps its entities and gets
``attrs["failed"] = True``.
"""
from __future__ import annotations

from typing import Any, Iterable

from spacy.language import Language
from spacy.tokens import Doc, Span
from spacy.util import filter_spans

SPANS_KEY = "diziner"


class DizinerComponent:
    def __init__(self, nlp: Language, name: str, guideline: str, pool: str, aggregation: str | None = None,
                 cache_path: str | None = None, spans_key: str = SPANS_KEY, batch_size: int = 64):
        from diziner.api import Annotator

        self.name = name
        self.spans_key = spans_key
        self.batch_size = batch_size
        self.annotator = Annotator(guideline, pool, aggregation=aggregation, cache_path=cache_path)

    def _set(self, doc: Doc, rows: list[dict[str, Any]] | None) -> Doc:
        group: list[Span] = []
        support: list[float] = []
        hotspot: list[bool] = []
        unaligned = 0
        for r in rows or []:
            sp = doc.char_span(r["start"], r["end"], label=r["label"], alignment_mode="expand")
            if sp is None:
                unaligned += 1
                continue
            group.append(sp)
            support.append(float(r.get("support", {}).get("weight", 0.0)))
            hotspot.append(bool(r.get("hotspot", False)))
        doc.spans[self.spans_key] = group
        attrs = doc.spans[self.spans_key].attrs
        attrs.update({"support": support, "hotspot": hotspot, "unaligned": unaligned, "failed": rows is None})
        if rows is not None:
            doc.ents = filter_spans(group)
        return doc

    def __call__(self, doc: Doc) -> Doc:
        return self._set(doc, self.annotator.predict([doc.text])[0])

    def pipe(self, docs: Iterable[Doc], batch_size: int | None = None) -> Iterable[Doc]:
        size = batch_size or self.batch_size
        batch: list[Doc] = []
        for doc in docs:
            batch.append(doc)
            if len(batch) >= size:
                yield from self._flush(batch)
                batch = []
        if batch:
            yield from self._flush(batch)

    def _flush(self, batch: list[Doc]) -> Iterable[Doc]:
        for doc, rows in zip(batch, self.annotator.predict([d.text for d in batch])):
            yield self._set(doc, rows)


@Language.factory("diziner", default_config={"aggregation": None, "cache_path": None, "spans_key": SPANS_KEY,
                                              "batch_size": 64})
def make_component(nlp: Language, name: str, guideline: str, pool: str, aggregation: str | None,
                   cache_path: str | None, spans_key: str, batch_size: int) -> DizinerComponent:
    return DizinerComponent(nlp, name, guideline, pool, aggregation=aggregation, cache_path=cache_path,
                            spans_key=spans_key, batch_size=batch_size)
