"""What an export reads: the consensus or one annotator of a run, or a plain JSONL spans file."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diziner import atomic
from diziner.errors import ConfigError, InputError

__all__ = ["ExportDoc", "ExportSource", "ExportSpan", "load_source"]


@dataclass(frozen=True)
class ExportSpan:
    start: int
    end: int
    label: str
    text: str
    score: float | None = None  # support weight of the consensus (None for one annotator / plain files)
    annotators: tuple[str, ...] = ()
    hotspot: bool = False

    def key(self) -> tuple[int, int, str]:
        return (self.start, self.end, self.label)


@dataclass
class ExportDoc:
    id: str
    text: str
    spans: list[ExportSpan] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class ExportSource:
    docs: list[ExportDoc]
    source: str  # "consensus", an annotator id, or "file"
    path: Path  # the file read
    run: Path | None = None  # the run directory, when there is one
    skipped: list[str] = field(default_factory=list)  # document ids left out (failed annotation)

    @property
    def model_version(self) -> str:
        name = self.run.resolve().name if self.run is not None else self.path.stem
        return f"diziner:{name}:{self.source}"


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _parse_span(raw: Any, text: str, path: Path, line: int, i: int) -> ExportSpan:
    if not isinstance(raw, dict):
        raise InputError(path, line, f"spans[{i}]: expected an object")
    s, e, lab = raw.get("start"), raw.get("end"), raw.get("label")
    if not _int(s) or not _int(e):
        raise InputError(path, line, f"spans[{i}]: start and end must be integers")
    if not (0 <= s < e <= len(text)):
        raise InputError(path, line, f"spans[{i}]: offsets {s}..{e} outside the text (length {len(text)})")
    if not isinstance(lab, str) or not lab.strip():
        raise InputError(path, line, f"spans[{i}]: label must be a non-empty string")
    st = raw.get("text")
    if st is not None and st != text[s:e]:
        raise InputError(path, line, f"spans[{i}]: text {st!r} does not match the document text {text[s:e]!r} at {s}..{e}")
    sup = raw.get("support") if isinstance(raw.get("support"), dict) else {}
    w = sup.get("weight", raw.get("score"))
    score = float(w) if isinstance(w, (int, float)) and not isinstance(w, bool) else None
    anns = tuple(str(a) for a in sup.get("annotators") or [] if isinstance(a, (str, int)))
    return ExportSpan(s, e, lab, text[s:e], score, anns, bool(raw.get("hotspot", False)))


def read_spans_jsonl(path: Path, skip_failed: bool = True) -> tuple[list[ExportDoc], list[str]]:
    """Read ``{"id","text","spans":[...]}`` lines (final/annotations.jsonl, by_annotator, or a user file).

    Lines with ``"status": "failed"`` are left out (their ids are returned) when ``skip_failed``.
    """
    if not path.exists():
        raise InputError(path, None, "file not found")
    docs: list[ExportDoc] = []
    skipped: list[str] = []
    seen: set[str] = set()
    for n, obj in atomic.iter_jsonl(path):
        text = obj.get("text")
        if not isinstance(text, str):
            raise InputError(path, n, "missing \"text\" (a string)")
        did = obj.get("id", n)
        if not isinstance(did, (str, int)) or isinstance(did, bool):
            raise InputError(path, n, "\"id\" must be a string or an integer")
        did = str(did)
        if did in seen:
            raise InputError(path, n, f"duplicate document id {did!r}")
        seen.add(did)
        if skip_failed and obj.get("status") == "failed":
            skipped.append(did)
            continue
        spans = obj.get("spans", [])
        if not isinstance(spans, list):
            raise InputError(path, n, "\"spans\" must be a list")
        parsed = sorted((_parse_span(s, text, path, n, i) for i, s in enumerate(spans)),
                        key=lambda s: (s.start, -s.end, s.label))
        meta = obj.get("meta") if isinstance(obj.get("meta"), dict) else {}
        docs.append(ExportDoc(did, text, parsed, dict(meta)))
    return docs, skipped


def load_source(path: str | Path, source: str = "consensus") -> ExportSource:
    """The documents to export: a run's consensus (``final/annotations.jsonl``), one annotator's
    annotation (``final/by_annotator/<id>.jsonl``), or a plain JSONL spans file."""
    p = Path(path)
    if p.is_dir():
        final = p / "final"
        if source == "consensus":
            f = final / "annotations.jsonl"
            if not f.is_file():
                raise InputError(p, None, "no final/annotations.jsonl (is the refine run finished?)")
        else:
            f = final / "by_annotator" / f"{source}.jsonl"
            if not f.is_file():
                avail = sorted(x.stem for x in (final / "by_annotator").glob("*.jsonl"))
                raise ConfigError(f"{p}: no annotator {source!r} in final/by_annotator "
                                  f"(available: {', '.join(avail) or 'none'})")
        docs, skipped = read_spans_jsonl(f)
        if source == "consensus" and (final / "failed.jsonl").is_file():
            # documents nobody answered are not in annotations.jsonl; they are listed in failed.jsonl
            lost, _ = read_spans_jsonl(final / "failed.jsonl", skip_failed=False)
            skipped += [d.id for d in lost]
        return ExportSource(docs, source, f, run=p, skipped=skipped)
    if not p.exists():
        raise InputError(p, None, "not found")
    if source != "consensus":
        raise ConfigError(f"{p}: --source {source!r} needs a run directory; a plain JSONL file has one source")
    docs, skipped = read_spans_jsonl(p)
    return ExportSource(docs, "file", p, skipped=skipped)
