"""Lenient parsing of an annotator's answer into mentions: the last line of defence.

Structured output (a JSON-schema grammar) should make answers well formed; this parser
still copes with what models and backends without grammars produce:

- ``<think>…</think>`` blocks (and an unclosed ``<think>`` or a lone ``</think>``),
- Markdown code fences and prose before or after the JSON,
- trailing commas, single-quoted strings (a single quote closes a string only when it is
  followed by ``,`` ``:`` ``}`` ``]`` or the end, so ``'O'Brien'`` reads as ``O'Brien``),
  bare object keys,
- a truncated answer (``max_tokens`` reached): the complete mentions are kept and the
  cut-off last one is discarded (``truncated=True``),
- ``{"mentions": [...]}`` (also ``entities``/``items``/...), a bare list, a single
  mention object, a ``{"LABEL": ["text", ...]}`` mapping, ``["text", "LABEL"]`` pairs,
- key variants: ``text``/``entity``/``mention``/``span``/``name`` for the text,
  ``label``/``type``/``entity_type``/``category``/``tag`` for the label.

Labels are matched to the schema exactly, then case-insensitively, then without a
``B-``/``I-`` style prefix; any other label is dropped and counted in ``dropped_labels``.
The parser never raises: an answer that cannot be read gives ``ok=False`` and ``error``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable

__all__ = ["ParsedMention", "ParseResult", "parse_mentions", "LabelMatcher"]

_MAX_CANDIDATES = 64  # JSON start positions tried per answer

_TEXT_KEYS = ("text", "entity", "mention", "span", "name", "value", "word", "entity_text", "surface")
_LABEL_KEYS = ("label", "type", "entity_type", "entity_label", "category", "tag", "class", "ner", "kind")
_START_KEYS = ("start", "start_char", "char_start", "begin", "offset", "start_offset")
_LIST_KEYS = ("mentions", "entities", "items", "annotations", "results", "result", "output", "named_entities", "ner", "spans")


@dataclass(frozen=True)
class ParsedMention:
    """A mention as the model wrote it: surface text, schema label, optional start offset."""

    text: str
    label: str
    start: int | None = None


@dataclass
class ParseResult:
    mentions: list[ParsedMention] = field(default_factory=list)
    dropped_labels: int = 0  # mentions whose label is not in the schema
    ok: bool = False
    error: str | None = None
    truncated: bool = False  # the answer was cut off; complete mentions were kept
    skipped_items: int = 0  # list items that were not readable as a mention (no text, wrong shape)


class LabelMatcher:
    """Maps a label written by a model to a schema label, or None."""

    def __init__(self, labels: Iterable[str]):
        self.labels = list(labels)
        self._exact = set(self.labels)
        self._fold = {lab.casefold(): lab for lab in self.labels}

    def __call__(self, label: Any) -> str | None:
        if not isinstance(label, str):
            return None
        lab = label.strip()
        if lab in self._exact:
            return lab
        hit = self._fold.get(lab.casefold())
        if hit is not None:
            return hit
        m = re.match(r"^[BIESLU][-_](.+)$", lab, re.IGNORECASE)
        if m:
            return self._fold.get(m.group(1).casefold())
        return None


# --------------------------------------------------------------------------- lenient JSON


class _Fail(Exception):
    pass


class _Truncated(Exception):
    """End of input inside a value; ``partial`` holds what was complete so far."""

    def __init__(self, partial: Any = None):
        super().__init__("truncated")
        self.partial = partial


_WS = " \t\r\n"
_BARE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "'": "'"}


class _Reader:
    """A small recursive-descent reader for JSON with the common LLM slips tolerated.

    Arrays that end early keep their complete elements (``_Truncated.partial``)."""

    def __init__(self, s: str):
        self.s = s
        self.n = len(s)
        self.depth = 0

    def ws(self, i: int) -> int:
        while i < self.n and self.s[i] in _WS:
            i += 1
        return i

    def value(self, i: int) -> tuple[Any, int]:
        i = self.ws(i)
        if i >= self.n:
            raise _Truncated(None)
        c = self.s[i]
        if c == "{":
            return self.obj(i)
        if c == "[":
            return self.arr(i)
        if c == '"' or c == "'":
            return self.string(i)
        m = _NUMBER.match(self.s, i)
        if m:
            txt = m.group(0)
            return (float(txt) if any(ch in txt for ch in ".eE") else int(txt)), m.end()
        for word, val in (("true", True), ("false", False), ("null", None)):
            if self.s.startswith(word, i):
                return val, i + len(word)
            if self.n - i < len(word) and word.startswith(self.s[i:]):
                raise _Truncated(None)
        raise _Fail(f"unexpected character {c!r} at {i}")

    def _nest(self) -> None:
        self.depth += 1
        if self.depth > 200:
            raise _Fail("nesting too deep")

    def obj(self, i: int) -> tuple[dict, int]:
        self._nest()
        out: dict[str, Any] = {}
        i += 1
        while True:
            i = self.ws(i)
            if i >= self.n:
                raise _Truncated(out)
            c = self.s[i]
            if c == "}":
                self.depth -= 1
                return out, i + 1
            if c == ",":  # stray or trailing comma
                i += 1
                continue
            if c in "\"'":
                try:
                    key, i = self.string(i)
                except _Truncated:
                    raise _Truncated(out) from None
            else:
                m = _BARE_KEY.match(self.s, i)
                if not m:
                    raise _Fail(f"expected a key at {i}")
                key, i = m.group(0), m.end()
            i = self.ws(i)
            if i >= self.n:
                raise _Truncated(out)
            if self.s[i] != ":":
                raise _Fail(f"expected ':' at {i}")
            try:
                val, i = self.value(i + 1)
            except _Truncated as t:
                if t.partial is not None:  # keep a cut-off list such as "mentions"
                    out[str(key)] = t.partial
                raise _Truncated(out) from None
            out[str(key)] = val
            i = self.ws(i)
            if i >= self.n:
                raise _Truncated(out)
            if self.s[i] == ",":
                i += 1
            elif self.s[i] != "}":
                raise _Fail(f"expected ',' or '}}' at {i}")

    def arr(self, i: int) -> tuple[list, int]:
        self._nest()
        out: list[Any] = []
        i += 1
        while True:
            i = self.ws(i)
            if i >= self.n:
                raise _Truncated(out)
            c = self.s[i]
            if c == "]":
                self.depth -= 1
                return out, i + 1
            if c == ",":
                i += 1
                continue
            try:
                val, i = self.value(i)
            except _Truncated:
                raise _Truncated(out) from None  # keep the complete elements only
            out.append(val)
            i = self.ws(i)
            if i >= self.n:
                raise _Truncated(out)
            if self.s[i] == ",":
                i += 1
            elif self.s[i] != "]":
                raise _Fail(f"expected ',' or ']' at {i}")

    def string(self, i: int) -> tuple[str, int]:
        q = self.s[i]
        i += 1
        buf: list[str] = []
        while i < self.n:
            c = self.s[i]
            if c == "\\":
                if i + 1 >= self.n:
                    raise _Truncated(None)
                e = self.s[i + 1]
                if e == "u":
                    h = self.s[i + 2 : i + 6]
                    if len(h) < 4:
                        raise _Truncated(None)
                    try:
                        cp = int(h, 16)
                    except ValueError:
                        raise _Fail(f"bad \\u escape at {i}") from None
                    i += 6
                    # a surrogate pair written as two escapes
                    if 0xD800 <= cp <= 0xDBFF and self.s.startswith("\\u", i):
                        try:
                            lo = int(self.s[i + 2 : i + 6], 16)
                        except ValueError:
                            lo = -1
                        if 0xDC00 <= lo <= 0xDFFF:
                            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00)
                            i += 6
                    buf.append(chr(cp) if not 0xD800 <= cp <= 0xDFFF else "\ufffd")
                    continue
                buf.append(_ESCAPES.get(e, e))
                i += 2
                continue
            if c == q:
                if q == "'":
                    j = self.ws(i + 1)
                    if j < self.n and self.s[j] not in ",:}]":
                        buf.append(c)  # an apostrophe inside a single-quoted string
                        i += 1
                        continue
                return "".join(buf), i + 1
            buf.append(c)
            i += 1
        raise _Truncated(None)


# --------------------------------------------------------------------------- answer shapes

_THINK_BLOCK = re.compile(r"<(think|thinking|reasoning)>.*?</\1>", re.DOTALL | re.IGNORECASE)
_THINK_OPEN = re.compile(r"<(think|thinking|reasoning)>", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</(think|thinking|reasoning)>", re.IGNORECASE)
_FENCE = re.compile(r"```[A-Za-z0-9_+-]*[ \t]*\n?(.*?)(?:```|\Z)", re.DOTALL)


def _strip_thinking(text: str) -> str:
    text = _THINK_BLOCK.sub(" ", text)
    closes = list(_THINK_CLOSE.finditer(text))
    if closes:  # the opening tag was part of the prompt: keep what follows the last close
        text = text[closes[-1].end() :]
    m = _THINK_OPEN.search(text)
    if m:  # never closed: the answer is what came before it (usually nothing)
        text = text[: m.start()]
    return text


def _candidate_texts(text: str) -> list[str]:
    """The text inside code fences first (when there are any), then the whole answer."""
    out = [m.group(1) for m in _FENCE.finditer(text) if m.group(1).strip()]
    out.append(text)
    return out


def _key(d: dict, names: tuple[str, ...]) -> Any:
    low = {str(k).casefold(): v for k, v in d.items()}
    for n in names:
        if n in low:
            return low[n]
    return None


def _as_int(v: Any) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v if v >= 0 else None
    if isinstance(v, float) and v.is_integer() and v >= 0:
        return int(v)
    if isinstance(v, str) and v.strip().isdigit():
        return int(v.strip())
    return None


def _mention_list(value: Any, match: LabelMatcher) -> list[Any] | None:
    """Find the list of mention items in a decoded answer; None when it has no such shape."""
    if isinstance(value, list):
        if len(value) == 1 and isinstance(value[0], dict) and _key(value[0], _LIST_KEYS) is not None \
                and _key(value[0], _TEXT_KEYS) is None:
            return _mention_list(value[0], match)
        return value
    if isinstance(value, dict):
        return _mentions_in_dict(value, match)
    return None


def _mentions_in_dict(value: dict, match: LabelMatcher) -> list[Any] | None:
    inner = _key(value, _LIST_KEYS)
    if isinstance(inner, list):
        return inner
    if isinstance(inner, dict):
        return _mention_list(inner, match)
    if _key(value, _TEXT_KEYS) is not None and _key(value, _LABEL_KEYS) is not None:
        return [value]
    # {"PER": ["Ada", ...], "ORG": [...]}: a mapping from label to surface texts
    if value and all(isinstance(v, list) and all(isinstance(x, str) for x in v) for v in value.values()):
        if any(match(k) for k in value):
            return [{"text": t, "label": k} for k, v in value.items() for t in v]
    if not value:
        return []
    return None


def _read_items(items: list[Any], match: LabelMatcher, res: ParseResult) -> None:
    for it in items:
        text: Any = None
        label: Any = None
        start: Any = None
        if isinstance(it, dict):
            text = _key(it, _TEXT_KEYS)
            label = _key(it, _LABEL_KEYS)
            start = _as_int(_key(it, _START_KEYS))
            if isinstance(text, dict):  # {"entity": {"text": ..., "type": ...}}
                label = label if label is not None else _key(text, _LABEL_KEYS)
                text = _key(text, _TEXT_KEYS)
        elif isinstance(it, list) and len(it) in (2, 3) and all(isinstance(x, str) for x in it[:2]):
            text, label = it[0], it[1]
            if match(text) is not None and match(label) is None:  # ["PER", "Ada"]
                text, label = label, text
        if not isinstance(text, str) or not text.strip() or label is None:
            res.skipped_items += 1
            continue
        lab = match(label)
        if lab is None:
            res.dropped_labels += 1
            continue
        res.mentions.append(ParsedMention(text=text, label=lab, start=start))


def _try_at(s: str, i: int, match: LabelMatcher) -> ParseResult | None:
    """Parse the JSON value starting at ``s[i]``; None when it is not a mention answer."""
    reader = _Reader(s)
    truncated = False
    try:
        value, _ = reader.value(i)
    except _Fail:
        return None
    except _Truncated as t:
        value, truncated = t.partial, True
    except RecursionError:
        return None
    items = _mention_list(value, match) if value is not None else None
    if items is None:
        return None
    res = ParseResult(truncated=truncated)
    _read_items(items, match, res)
    if items and not res.mentions and res.dropped_labels == 0:
        res.error = "the JSON holds no readable mention objects"
        return res  # ok stays False
    if truncated and not res.mentions and res.dropped_labels == 0:
        res.error = "the answer was cut off before the first complete mention"
        return res
    res.ok = True
    return res


def parse_mentions(text: Any, labels: Iterable[str]) -> ParseResult:
    """Read the mentions in a model's answer. Never raises; see the module docstring."""
    match = labels if isinstance(labels, LabelMatcher) else LabelMatcher(labels)
    if not isinstance(text, str):
        return ParseResult(ok=False, error="the answer is not text")
    body = _strip_thinking(text)
    if not body.strip():
        return ParseResult(ok=False, error="the answer is empty")
    first_failure: ParseResult | None = None
    for cand in _candidate_texts(body):
        starts = [m.start() for m in re.finditer(r"[\[{]", cand)][:_MAX_CANDIDATES]
        for i in starts:
            res = _try_at(cand, i, match)
            if res is None:
                continue
            if res.ok:
                return res
            if first_failure is None:
                first_failure = res
    if first_failure is not None:
        return first_failure
    return ParseResult(ok=False, error="no JSON list of mentions found in the answer")
