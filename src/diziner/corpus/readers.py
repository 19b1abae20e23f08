"""Readers for annotation files: CoNLL columns, JSONL spans, plain text, nested JSON.

:func:`read_corpus` returns an :class:`AnnotatedCorpus`; :func:`iter_documents` streams
``(Document, spans)`` pairs. Formats (see docs/formats.md):

* ``conll`` — one token per line, tag in the last column (TAB or spaces), blank line
  between sentences, optional ``-DOCSTART-`` lines. Tags in BIO, IOB1, IOBES or BILOU
  are normalised to BIO. Each sentence is a Document whose text is its tokens joined by
  single spaces; the dataset's tokenisation is kept as the token offsets.
* ``jsonl`` — one object per line: ``{"id", "text", "spans": [{"start","end","label"}]}``;
  ``"entities"`` (objects, also with ``start_offset``/``end_offset``) and doccano's
  ``"label": [[start, end, label], ...]`` are accepted as well.
* ``text`` — one document per non-blank line, no spans.
* ``genia`` — a JSON list of ``{"sentence": [tokens], "ner": [{"index": [token ids], "type": T}]}``;
  nested spans are kept.

Every problem with the input raises :class:`InputError` naming the file, the line and
the problem. Repairs that do not stop reading (empty tokens, repaired tag sequences,
whitespace-only lines) are listed in ``AnnotatedCorpus.problems`` as
``"<file>:<line>: <kind>: <detail>"``.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diziner.corpus.bio import TagProblem, bio_to_spans, detect_scheme, normalize_tags, split_tag
from diziner.corpus.model import AnnotatedCorpus, Document, Span
from diziner.errors import DizinerError, InputError

FORMATS = ("conll", "jsonl", "text", "genia", "csv", "parquet")
FORMAT_ALIASES = {"json": "genia", "nested": "genia", "txt": "text", "bio": "conll", "tsv": "conll"}
DOCSTART = "-DOCSTART-"

# Problem kinds (the word after the location in a problem line).
EMPTY_TOKEN = "empty-token"
REPAIRED_TAG = "repaired-tags"
WHITESPACE_LINE = "whitespace-line"
_PROBLEM_RE = re.compile(r":\s([a-z][a-z-]*):\s")


def problem_kind(problem: str) -> str:
    """The kind of a problem line (``empty-token``, ``repaired-tags``, ...), or ``other``."""
    m = _PROBLEM_RE.search(problem)
    return m.group(1) if m else "other"


def _problem(path: Path, line: int | None, kind: str, detail: str) -> str:
    where = f"{path}:{line}" if line is not None else str(path)
    return f"{where}: {kind}: {detail}"


# --------------------------------------------------------------------------- format


def canonical_format(fmt: str | None) -> str | None:
    """Normalise a user-given format name; raises DizinerError for an unknown one."""
    if fmt is None or fmt == "auto":
        return None
    f = fmt.strip().lower()
    f = FORMAT_ALIASES.get(f, f)
    if f not in FORMATS:
        raise DizinerError(f"unknown format {fmt!r} (use one of {', '.join(FORMATS)})")
    return f


def _looks_like_conll_line(line: str) -> bool:
    cols = line.split("\t") if "\t" in line else line.split()
    return len(cols) >= 2 and (cols[-1] == "O" or re.match(r"^[BIESLU]-\S", cols[-1]) is not None)


_CONLL_SUFFIXES = {".tsv", ".conll", ".conll03", ".iob", ".iob1", ".iob2", ".bio", ".iobes", ".bioes", ".bilou"}


def detect_format(path: str | Path) -> str:
    """Guess the format from the extension and the first lines of the file.

    ``.jsonl`` -> jsonl; content starting with ``[`` -> genia, with ``{`` -> jsonl;
    ``.json`` -> genia; ``.tsv``/``.conll``/``.iob``/``.bio``... -> conll; otherwise conll
    when 80 % of the first 50 content lines end in a tag column (or all hold a TAB),
    else text.
    """
    p = Path(path)
    if p.suffix.lower() == ".parquet":
        return "parquet"
    data = _read_bytes(p)
    head = data[:65536].decode("utf-8", errors="replace").lstrip("\ufeff")
    stripped = head.lstrip()
    suffix = p.suffix.lower()
    if suffix == ".jsonl":
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    if stripped.startswith("["):
        return "genia"
    if stripped.startswith("{"):
        return "jsonl"
    if suffix == ".json":
        return "genia"
    if suffix in _CONLL_SUFFIXES:
        return "conll"
    lines = [ln.rstrip("\r\n ") for ln in head.splitlines()[:200]]
    content = [ln for ln in lines if ln.strip() and not ln.startswith(DOCSTART)]
    if not content:
        return "conll" if any(ln.startswith(DOCSTART) for ln in lines) else "text"
    sample = content[:50]
    tagged = sum(_looks_like_conll_line(ln) for ln in sample)
    if tagged >= max(1, int(0.8 * len(sample))) or all("\t" in ln for ln in sample):
        return "conll"
    return "text"


# --------------------------------------------------------------------------- bytes/lines


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InputError(path, None, "no such file") from None
    except IsADirectoryError:
        raise InputError(path, None, "is a directory, not a file") from None
    except OSError as e:
        raise InputError(path, None, f"cannot read file ({e.strerror or e})") from None


def _iter_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, decoded line without its newline); bad UTF-8 names the line."""
    data = _read_bytes(path)
    if not data.strip():
        raise InputError(path, None, "file is empty")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    for n, raw in enumerate(data.split(b"\n"), start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise InputError(path, n, f"bytes that are not UTF-8 at column {e.start + 1}") from None
        if text.endswith("\r"):
            text = text[:-1]
        yield n, text


def _decode_all(path: Path) -> str:
    data = _read_bytes(path)
    if not data.strip():
        raise InputError(path, None, "file is empty")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise InputError(path, line, "bytes that are not UTF-8") from None


def _short(e: BaseException) -> str:
    if isinstance(e, RecursionError):
        return "nested too deeply"
    return " ".join(str(e).split())[:120]


# --------------------------------------------------------------------------- conll


class _ConllState:
    def __init__(self, path: Path, scheme: str, problems: list[str]):
        self.path = path
        self.scheme = scheme
        self.problems = problems
        self.pending_repairs: list[str] = []  # kept only if the file turns out not to be IOB1
        self.all_tags: list[str] = []
        self.ncols: int | None = None
        self.ncols_line = 0
        self.groups = 0  # number of -DOCSTART- groups with content
        self.group_open = False  # a -DOCSTART- was seen and no sentence yet
        self.saw_docstart = False
        self.n_docs = 0


def _conll_sentence(
    st: _ConllState, rows: list[tuple[int, str, str]], group: int | None
) -> tuple[Document, list[Span]]:
    """Build one Document from (line, token, tag) rows."""
    words: list[str] = []
    raw_tags: list[str] = []
    lines: list[int] = []
    for line, tok, tag in rows:
        if not tok.strip():
            st.problems.append(
                _problem(st.path, line, EMPTY_TOKEN, f"token is empty (tag {tag}); dropped")
            )
            continue
        words.append(tok)
        raw_tags.append(tag)
        lines.append(line)
    tokens: list[tuple[int, int]] = []
    pos = 0
    for w in words:
        tokens.append((pos, pos + len(w)))
        pos += len(w) + 1
    text = " ".join(words)
    doc_id = f"{st.path.stem}:{st.n_docs}"
    meta: dict[str, Any] = {"line": rows[0][0] if rows else None}
    if group is not None:
        meta["group"] = group
    doc = Document(doc_id, text, tokens, meta)
    st.n_docs += 1
    tags, repairs = normalize_tags(raw_tags, st.scheme)
    st.all_tags.extend(raw_tags)
    st.all_tags.append("O")
    for rp in repairs:
        msg = _problem(st.path, lines[rp.index], REPAIRED_TAG, rp.message)
        (st.pending_repairs if st.scheme == "auto" else st.problems).append(msg)
    return doc, bio_to_spans(doc, tags)


def _iter_conll(path: Path, scheme: str, problems: list[str], out: dict[str, Any]) -> Iterator[tuple[Document, list[Span]]]:
    st = _ConllState(path, scheme, problems)
    rows: list[tuple[int, str, str]] = []
    group: int | None = None
    for n, line in _iter_lines(path):
        body = line.rstrip()
        cols = body.split("\t") if "\t" in body else body.split()
        if not cols or cols[0] == DOCSTART:  # a sentence ends
            if not body and line:
                problems.append(_problem(path, n, WHITESPACE_LINE, "whitespace-only line read as a sentence break"))
            if rows:
                yield _conll_sentence(st, rows, group)
                rows = []
            if cols:
                group = _open_group(st, group)
            continue
        rows.append(_conll_row(st, n, body, cols))
    if rows:
        yield _conll_sentence(st, rows, group)
    _end_conll(st, out)


def _open_group(st: _ConllState, group: int | None) -> int | None:
    """A -DOCSTART- line: a new group unless the previous one has no sentence yet."""
    if not st.saw_docstart or not st.group_open:
        group = st.groups
        st.groups += 1
    st.saw_docstart = True
    st.group_open = True
    return group


def _conll_row(st: _ConllState, n: int, body: str, cols: list[str]) -> tuple[int, str, str]:
    """(line, token, tag) of a token line, its column count checked against the first one's."""
    path = st.path
    if len(cols) < 2:
        raise InputError(path, n, f"expected a token and a tag separated by TAB or spaces, got {body!r}")
    if st.ncols is None:
        st.ncols, st.ncols_line = len(cols), n
    elif len(cols) != st.ncols:
        raise InputError(
            path, n, f"{len(cols)} columns, but line {st.ncols_line} has {st.ncols} (columns must be consistent)"
        )
    tag = cols[-1].strip()
    try:
        split_tag(tag)
    except ValueError as e:
        raise InputError(path, n, str(e)) from None
    st.group_open = False
    return (n, cols[0], tag)


def _end_conll(st: _ConllState, out: dict[str, Any]) -> None:
    """At the end of the file: the scheme detected, the repairs reported, the group count."""
    if st.n_docs == 0:
        raise InputError(st.path, None, "no sentences found (only blank or -DOCSTART- lines)")
    detected = detect_scheme(st.all_tags) if st.scheme == "auto" else st.scheme
    if not (st.scheme == "auto" and detected == "iob1"):
        st.problems.extend(st.pending_repairs)
    out["scheme"] = detected
    out["groups"] = st.groups if st.saw_docstart else None


# --------------------------------------------------------------------------- jsonl


def _int_field(path: Path, n: int, value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(path, n, f"{what} must be an integer, got {value!r}")
    return value


def _make_span(path: Path, n: int, doc: Document, start: Any, end: Any, label: Any, text: Any = None) -> Span:
    s = _int_field(path, n, start, "span start")
    e = _int_field(path, n, end, "span end")
    if not isinstance(label, str) or not label.strip() or any(c.isspace() for c in label):
        raise InputError(path, n, f"span label must be a non-empty string without spaces, got {label!r}")
    if not 0 <= s < e <= len(doc.text):
        raise InputError(path, n, f"span offsets [{s}, {e}) out of range for a text of {len(doc.text)} characters")
    if text is not None and text != doc.text[s:e]:
        raise InputError(path, n, f"span text {text!r} does not match the text at [{s}, {e}): {doc.text[s:e]!r}")
    return Span(doc.id, s, e, label, doc.text[s:e])


def _spans_from_record(path: Path, n: int, doc: Document, rec: dict[str, Any]) -> list[Span]:
    spans: list[Span] = []
    if "spans" in rec or "entities" in rec:
        key = "spans" if "spans" in rec else "entities"
        items = rec[key]
        if not isinstance(items, list):
            raise InputError(path, n, f'"{key}" must be a list')
        for it in items:
            if isinstance(it, dict):
                start = it.get("start", it.get("start_offset"))
                end = it.get("end", it.get("end_offset"))
                if start is None or end is None or "label" not in it:
                    raise InputError(path, n, f'each item of "{key}" needs "start", "end" and "label"')
                spans.append(_make_span(path, n, doc, start, end, it["label"], it.get("text")))
            elif isinstance(it, list) and len(it) == 3:
                spans.append(_make_span(path, n, doc, *it))
            else:
                raise InputError(path, n, f'each item of "{key}" must be an object or [start, end, label]')
    elif "label" in rec:
        items = rec["label"]
        if not isinstance(items, list):
            raise InputError(path, n, '"label" must be a list of [start, end, label]')
        for it in items:
            if not (isinstance(it, list) and len(it) == 3):
                raise InputError(path, n, '"label" must be a list of [start, end, label]')
            spans.append(_make_span(path, n, doc, *it))
    return sorted(set(spans))


def _tokens_field(path: Path, n: int, value: Any, text: str) -> list[tuple[int, int]]:
    if not isinstance(value, list):
        raise InputError(path, n, '"tokens" must be a list of [start, end] pairs')
    toks: list[tuple[int, int]] = []
    prev = 0
    for t in value:
        if isinstance(t, dict) and "start" in t and "end" in t:  # Prodigy: {"text","start","end","id","ws"}
            t = [t["start"], t["end"]]
        if not (isinstance(t, list) and len(t) == 2):
            raise InputError(path, n, '"tokens" must be a list of [start, end] pairs')
        s = _int_field(path, n, t[0], "token start")
        e = _int_field(path, n, t[1], "token end")
        if not prev <= s < e <= len(text):
            raise InputError(path, n, f"token [{s}, {e}) out of range or out of order")
        toks.append((s, e))
        prev = e
    return toks


_JSONL_KNOWN = {"id", "text", "spans", "entities", "label", "tokens", "metadata", "sentence", "ner", "doc_id", "meta"}


def _iter_jsonl(path: Path, problems: list[str], out: dict[str, Any],
                text_field: str = "text") -> Iterator[tuple[Document, list[Span]]]:
    def records() -> Iterator[tuple[int, Document, list[Span]]]:
        count = 0
        for n, line in _iter_lines(path):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(path, n, f"invalid JSON ({e.msg} at column {e.colno})") from None
            except (ValueError, RecursionError) as e:
                raise InputError(path, n, f"invalid JSON ({_short(e)})") from None
            if not isinstance(rec, dict):
                raise InputError(path, n, f"expected a JSON object, got {type(rec).__name__}")
            if "sentence" in rec and text_field not in rec:
                doc, spans = _genia_record(path, n, rec, count)
            elif "fields" in rec and text_field not in rec:
                doc, spans = _argilla_record(path, n, rec, count)
            else:
                doc, spans = _jsonl_record(path, n, rec, count, text_field)
            count += 1
            yield n, doc, spans

    yield from _unique_ids(path, records(), out)


def _unique_ids(path: Path, records: Iterator[tuple[int, Document, list[Span]]],
                out: dict[str, Any]) -> Iterator[tuple[Document, list[Span]]]:
    """(document, spans) of ``(line, document, spans)`` records; a repeated id or no record at all is an InputError."""
    seen: set[str] = set()
    for n, doc, spans in records:
        if doc.id in seen:
            raise InputError(path, n, f"duplicate document id {doc.id!r}")
        seen.add(doc.id)
        yield doc, spans
    if not seen:
        raise InputError(path, None, "no documents found")
    out["groups"] = None


def _jsonl_record(path: Path, n: int, rec: dict[str, Any], index: int,
                  text_field: str = "text") -> tuple[Document, list[Span]]:
    text = rec.get(text_field)
    if not isinstance(text, str):
        hint = "" if text_field != "text" or len(rec) == 0 else f" (its keys: {', '.join(list(rec)[:8])}; see --text-field)"
        raise InputError(path, n, f'each line needs a "{text_field}" string{hint}')
    meta_id = rec["meta"].get("id") if isinstance(rec.get("meta"), dict) else None  # Prodigy keeps it in meta
    doc_id = rec.get("id", rec.get("doc_id", meta_id if meta_id is not None else f"{path.stem}:{index}"))
    if isinstance(doc_id, bool) or not isinstance(doc_id, (str, int)):
        raise InputError(path, n, f'"id" must be a string or an integer, got {doc_id!r}')
    meta = rec.get("metadata") or {}
    if not isinstance(meta, dict):
        raise InputError(path, n, '"metadata" must be an object')
    meta = dict(meta)
    meta.setdefault("line", n)
    for k, v in rec.items():
        if k not in _JSONL_KNOWN and isinstance(v, (str, int, float, bool)) and k not in meta:
            meta[k] = v  # e.g. "status" of an annotation run
    tokens = _tokens_field(path, n, rec["tokens"], text) if rec.get("tokens") is not None else None
    doc = Document(str(doc_id), text, tokens, meta)
    return doc, _spans_from_record(path, n, doc, rec)


# --------------------------------------------------------------------------- annotation tools read back


def _label_studio_record(path: Path, n: int, rec: dict[str, Any], index: int) -> tuple[Document, list[Span]]:
    """A Label Studio task: ``data.text``; the spans of its latest annotation that was not
    cancelled (what a human corrected), else of its first prediction."""
    data = rec["data"]
    text = data.get("text")
    if not isinstance(text, str):
        raise InputError(path, n, 'a Label Studio task needs "data": {"text": ...} (a string)')
    doc_id = data.get("doc_id", data.get("id", rec.get("id", f"{path.stem}:{index}")))
    doc = Document(str(doc_id), text, None, {"line": n})
    result = None
    for ann in reversed(rec.get("annotations") or []):
        if isinstance(ann, dict) and not ann.get("was_cancelled"):
            result = ann.get("result") or []
            break
    if result is None:
        preds = [p for p in rec.get("predictions") or [] if isinstance(p, dict)]
        result = (preds[0].get("result") or []) if preds else []
    spans = []
    for r in result:
        if not isinstance(r, dict) or r.get("type") != "labels":
            continue
        v = r.get("value") or {}
        labels = v.get("labels") or []
        if not labels:
            raise InputError(path, n, f"a Label Studio region without a label ({v!r})")
        spans.append(_make_span(path, n, doc, v.get("start"), v.get("end"), labels[0], v.get("text")))
    return doc, sorted(set(spans))


def _argilla_record(path: Path, n: int, rec: dict[str, Any], index: int) -> tuple[Document, list[Span]]:
    """An Argilla 2.x record: ``fields.text``; the spans of its first submitted response to a
    span question (what a human corrected), else of its span suggestion."""
    fields = rec.get("fields")
    text = fields.get("text") if isinstance(fields, dict) else None
    if not isinstance(text, str):
        raise InputError(path, n, 'an Argilla record needs "fields": {"text": ...} (a string)')
    doc = Document(str(rec.get("id", f"{path.stem}:{index}")), text, None, {"line": n})
    value = _argilla_response(rec)
    if value is None:
        sugg = rec.get("suggestions") or {}
        items = list(sugg.values()) if isinstance(sugg, dict) else sugg
        value = next((x.get("value") for x in items if isinstance(x, dict) and isinstance(x.get("value"), list)), [])
    spans = [_make_span(path, n, doc, v.get("start"), v.get("end"), v.get("label"))
             for v in value if isinstance(v, dict)]
    return doc, sorted(set(spans))


def _argilla_response(rec: dict[str, Any]) -> list | None:
    """The value of the first submitted response that is a list of spans, if any."""
    responses = rec.get("responses") or {}
    for answers in (responses.values() if isinstance(responses, dict) else []):
        for a in answers if isinstance(answers, list) else []:
            if isinstance(a, dict) and a.get("status", "submitted") == "submitted" and isinstance(a.get("value"), list):
                return a["value"]
    return None


# --------------------------------------------------------------------------- genia / nested json


@dataclass
class _Words:
    """A GENIA sentence's tokens laid out as text: empty tokens are left out of the text, so
    ``kept[i]`` is the position of token ``i`` in ``tokens`` (-1 for an empty one)."""

    words: list[str]
    tokens: list[tuple[int, int]]
    kept: list[int]
    text: str

    @classmethod
    def of(cls, words: list[str]) -> _Words:
        tokens: list[tuple[int, int]] = []
        kept: list[int] = []
        pos = 0
        for w in words:
            if not w.strip():
                kept.append(-1)
                continue
            kept.append(len(tokens))
            tokens.append((pos, pos + len(w)))
            pos += len(w) + 1
        return cls(words, tokens, kept, " ".join(w for w in words if w.strip()))


def _genia_record(path: Path, n: int, rec: Any, index: int) -> tuple[Document, list[Span]]:
    if not isinstance(rec, dict):
        raise InputError(path, n, f"expected an object with \"sentence\" and \"ner\", got {type(rec).__name__}")
    words = rec.get("sentence")
    if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
        raise InputError(path, n, '"sentence" must be a list of token strings')
    ner = rec.get("ner", [])
    if not isinstance(ner, list):
        raise InputError(path, n, '"ner" must be a list')
    sent = _Words.of(words)
    meta_id = rec["meta"].get("id") if isinstance(rec.get("meta"), dict) else None  # Prodigy keeps it in meta
    doc_id = rec.get("id", rec.get("doc_id", meta_id if meta_id is not None else f"{path.stem}:{index}"))
    doc = Document(str(doc_id), sent.text, sent.tokens, {"line": n})
    spans = [_genia_span(path, n, ent, sent, doc.id) for ent in ner]
    return doc, sorted(set(spans))


def _genia_span(path: Path, n: int, ent: Any, sent: _Words, doc_id: str) -> Span:
    if not isinstance(ent, dict) or "index" not in ent or "type" not in ent:
        raise InputError(path, n, 'each "ner" item needs "index" (token ids) and "type"')
    idx = ent["index"]
    lab = ent["type"]
    if not isinstance(idx, list) or not idx or not all(isinstance(i, int) and not isinstance(i, bool) for i in idx):
        raise InputError(path, n, f'"index" must be a non-empty list of token ids, got {idx!r}')
    if any(not 0 <= i < len(sent.words) for i in idx):
        raise InputError(path, n, f"token id out of range in {idx} (sentence has {len(sent.words)} tokens)")
    ids = sorted(idx)
    if ids != list(range(ids[0], ids[-1] + 1)):
        raise InputError(path, n, f"mention tokens {idx} are not contiguous")
    if not isinstance(lab, str) or not lab.strip() or any(c.isspace() for c in lab):
        raise InputError(path, n, f"mention type must be a non-empty string without spaces, got {lab!r}")
    pos_ids = [sent.kept[i] for i in ids if sent.kept[i] >= 0]
    if not pos_ids:
        raise InputError(path, n, f"mention {idx} covers only empty tokens")
    s, e = sent.tokens[pos_ids[0]][0], sent.tokens[pos_ids[-1]][1]
    return Span(doc_id, s, e, lab, sent.text[s:e])


def _iter_genia(path: Path, problems: list[str], out: dict[str, Any]) -> Iterator[tuple[Document, list[Span]]]:
    text = _decode_all(path)
    dec = json.JSONDecoder()

    def line_of(pos: int) -> int:
        return text.count("\n", 0, pos) + 1

    def fail(pos: int, problem: str) -> InputError:
        return InputError(path, line_of(pos), problem)

    i = len(text) - len(text.lstrip())
    if not text.startswith("[", i):
        raise fail(i, "expected a JSON list of sentence records starting with '['")
    i += 1
    count = 0
    seen: set[str] = set()
    line_base, line_pos = 1, 0  # incremental line counting
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i >= len(text):
            raise fail(i, "invalid JSON (unterminated list)")
        if text[i] == "]":
            rest = text[i + 1 :].strip()
            if rest:
                raise fail(i + 1, "invalid JSON (extra data after the list)")
            break
        if count:
            if text[i] != ",":
                raise fail(i, "invalid JSON (expected ',' or ']')")
            i += 1
            while i < len(text) and text[i].isspace():
                i += 1
        try:
            rec, end = dec.raw_decode(text, i)
        except json.JSONDecodeError as e:
            raise InputError(path, e.lineno, f"invalid JSON ({e.msg} at column {e.colno})") from None
        except (ValueError, RecursionError) as e:
            raise fail(i, f"invalid JSON ({_short(e)})") from None
        line_base += text.count("\n", line_pos, i)
        line_pos = i
        if isinstance(rec, dict) and isinstance(rec.get("data"), dict):  # a Label Studio task
            doc, spans = _label_studio_record(path, line_base, rec, count)
            out["format"] = "label-studio"
        else:
            doc, spans = _genia_record(path, line_base, rec, count)
        if doc.id in seen:
            raise InputError(path, line_base, f"duplicate document id {doc.id!r}")
        seen.add(doc.id)
        count += 1
        i = end
        yield doc, spans
    if count == 0:
        raise InputError(path, None, "no sentence records found")
    out["groups"] = None


# --------------------------------------------------------------------------- csv


def _iter_csv(path: Path, problems: list[str], out: dict[str, Any],
              text_field: str = "text") -> Iterator[tuple[Document, list[Span]]]:
    """A CSV file with a header: the ``text_field`` column is the document, ``id`` its id when
    present; the other columns become metadata. No spans (a table of texts to annotate)."""
    import csv
    import io

    raw = _decode_all(path)
    reader = csv.DictReader(io.StringIO(raw, newline=""), strict=True)
    try:
        header = reader.fieldnames or []
    except csv.Error as e:
        raise InputError(path, 1, f"invalid CSV ({e})") from None
    if text_field not in header:
        raise InputError(path, 1, f"a CSV file needs a '{text_field}' column (the header has: "
                         f"{', '.join(header) or 'nothing'}; see --text-field)")
    seen: set[str] = set()
    count = 0
    while True:
        start = reader.line_num + 1  # the line the next row starts on
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as e:  # e.g. a quote that is never closed, which would swallow the rows after it
            raise InputError(path, start, f"invalid CSV ({e})") from None
        n = reader.line_num
        if None in row:  # more fields than the header: an unquoted comma would cut the text short
            raise InputError(path, n, f"{len(header) + len(row[None])} fields, but the header has {len(header)} "
                             "(quote a field that holds a comma)")
        text = row.get(text_field)
        if text is None or not text.strip():
            continue
        doc_id = (row.get("id") or "").strip() or f"{path.stem}:{count}"
        if doc_id in seen:
            raise InputError(path, n, f"duplicate document id {doc_id!r}")
        seen.add(doc_id)
        meta = {k: v for k, v in row.items() if k not in (text_field, "id") and k is not None}
        meta["line"] = n
        count += 1
        yield Document(doc_id, text, None, meta), []
    if count == 0:
        raise InputError(path, None, "no documents found")
    out["groups"] = None


# --------------------------------------------------------------------------- text


def _iter_text(path: Path, problems: list[str], out: dict[str, Any]) -> Iterator[tuple[Document, list[Span]]]:
    count = 0
    for n, line in _iter_lines(path):
        if not line.strip():
            continue
        yield Document(f"{path.stem}:{count}", line, None, {"line": n}), []
        count += 1
    if count == 0:
        raise InputError(path, None, "no documents found")
    out["groups"] = None


def _iter_parquet(path: Path, out: dict[str, Any], text_field: str = "text") -> Iterator[tuple[Document, list[Span]]]:
    """Rows of a Parquet file read like JSONL records (``text``, optional ``id`` and ``spans``), a row
    group at a time; the "line" of an error is the row number (1-based)."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError(path, None, "reading Parquet needs pyarrow (pip install 'diziner[ray]' or pyarrow)") from None
    try:
        pf = pq.ParquetFile(path)
    except FileNotFoundError:
        raise InputError(path, None, "no such file") from None
    except Exception as e:  # pyarrow raises ArrowInvalid / OSError for a file that is not Parquet
        raise InputError(path, None, f"not a readable Parquet file ({_short(e)})") from None
    if text_field not in pf.schema_arrow.names:
        raise InputError(path, None, f'no "{text_field}" column (its columns: {", ".join(pf.schema_arrow.names[:8])}; '
                                     "see --text-field)")
    def records() -> Iterator[tuple[int, Document, list[Span]]]:
        count = 0
        for batch in pf.iter_batches(batch_size=4096):
            for rec in batch.to_pylist():
                doc, spans = _jsonl_record(path, count + 1, {k: v for k, v in rec.items() if v is not None}, count,
                                           text_field)
                count += 1
                yield count, doc, spans

    yield from _unique_ids(path, records(), out)


# --------------------------------------------------------------------------- public API


def iter_documents(
    path: str | Path,
    format: str | None = None,
    *,
    scheme: str = "auto",
    problems: list[str] | None = None,
    info: dict[str, Any] | None = None,
    text_field: str = "text",
) -> Iterator[tuple[Document, list[Span]]]:
    """Stream ``(document, spans)`` pairs from ``path``.

    ``format`` is one of :data:`FORMATS` (or None to detect it); ``scheme`` the CoNLL tag
    scheme (``auto``, ``bio``, ``iob1``, ``iobes``, ``bilou``). Repairs are appended to
    ``problems``; ``text_field`` names the text of a JSONL record or the text column of a CSV
    file (default ``text``). After the iterator is exhausted ``info`` holds ``format``, ``groups``
    (number of -DOCSTART- groups, or None) and, for CoNLL, the detected ``scheme``.
    """
    p = Path(path)
    fmt = canonical_format(format) or detect_format(p)
    if scheme != "auto" and scheme not in ("bio", "iob1", "iobes", "bilou"):
        raise DizinerError(f"unknown tag scheme {scheme!r} (use auto, bio, iob1, iobes or bilou)")
    probs = problems if problems is not None else []
    out = info if info is not None else {}
    out["format"] = fmt
    if fmt == "conll":
        yield from _iter_conll(p, scheme, probs, out)
    elif fmt == "jsonl":
        yield from _iter_jsonl(p, probs, out, text_field)
    elif fmt == "genia":
        yield from _iter_genia(p, probs, out)
    elif fmt == "csv":
        yield from _iter_csv(p, probs, out, text_field)
    elif fmt == "parquet":
        yield from _iter_parquet(p, out, text_field)
    else:
        yield from _iter_text(p, probs, out)


def read_corpus(path: str | Path, format: str | None = None, *, scheme: str = "auto",
                text_field: str = "text") -> AnnotatedCorpus:
    """Read a whole file into an :class:`AnnotatedCorpus` (format detected when None)."""
    return read_info(path, format, scheme=scheme, text_field=text_field)[0]


def read_info(path: str | Path, format: str | None = None, *, scheme: str = "auto",
              text_field: str = "text") -> tuple[AnnotatedCorpus, dict[str, Any]]:
    """Like :func:`read_corpus`, also returning ``info`` (format, groups, detected scheme)."""
    problems: list[str] = []
    info: dict[str, Any] = {}
    docs: list[Document] = []
    spans: dict[str, list[Span]] = {}
    for doc, sps in iter_documents(path, format, scheme=scheme, problems=problems, info=info, text_field=text_field):
        docs.append(doc)
        spans[doc.id] = sps
    return AnnotatedCorpus(docs, spans, problems, info.get("groups")), info


__all__ = [
    "FORMATS",
    "TagProblem",
    "canonical_format",
    "detect_format",
    "iter_documents",
    "problem_kind",
    "read_corpus",
    "read_info",
]
