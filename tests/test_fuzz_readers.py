"""Hostile and broken input files: every reader and loader either reads the file or raises
a DizinerError (InputError / ConfigError) whose message names the file — never another
exception. Whatever is read keeps the offset invariant text[start:end] == span.text.

Strategies mix raw garbage (random text and bytes, NUL, lone surrogates' UTF-8, BOMs,
CRLF) with near-valid structured records (right keys, wrong types and ranges), which is
where readers break in practice.
"""
from __future__ import annotations

import atexit
import json
import shutil
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diziner.corpus.readers import read_corpus
from diziner.errors import DizinerError

FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_DIR = Path(tempfile.mkdtemp(prefix="diziner-fuzz-"))
atexit.register(shutil.rmtree, _DIR, True)
CASES = {"n": 0}

# nasty characters: CJK, emoji (astral), combining marks, RTL, zero-width, NUL, CR, BOM
NASTY = st.sampled_from(["東京", "😀", "👩‍👩‍👧", "e\u0301", "שלום", "مرحبا", "\u200b", "\u0000", "\r", "\ufeff",
                         "\u2028", "\t", " ", "B-", "I-PER", "O", "-DOCSTART-", "\\", "\"", "{", "[", "]", "}"])
TEXT = st.lists(st.one_of(st.text(max_size=12), NASTY), max_size=20).map("".join)
JSONISH = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-5, 50), st.floats(allow_nan=True),
                                 TEXT), lambda ch: st.lists(ch, max_size=4) | st.dictionaries(TEXT, ch, max_size=4),
                       max_leaves=12)


def _file(name: str, data: bytes | str) -> Path:
    CASES["n"] += 1
    p = _DIR / f"{CASES['n']}-{name}"
    p.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass"))
    return p


def _read_ok_or_clear_error(path: Path, fmt: str | None) -> None:
    try:
        corpus = read_corpus(path, fmt)
    except DizinerError as e:
        msg = e.one_line()
        assert "\n" not in msg and msg
        if fmt is not None:  # an unknown format or the file itself is named
            assert str(path) in msg or "format" in msg, msg
        return
    for d in corpus.documents:
        assert isinstance(d.text, str)
        for s, e in d.tokens:
            assert 0 <= s <= e <= len(d.text)
        for sp in corpus.spans_of(d.id):
            assert 0 <= sp.start < sp.end <= len(d.text)
            assert d.text[sp.start:sp.end] == sp.text


@FUZZ
@given(data=st.one_of(st.binary(max_size=300), TEXT), fmt=st.sampled_from([None, "conll", "jsonl", "text", "genia"]),
       suffix=st.sampled_from([".txt", ".jsonl", ".json", ".conll", ".tsv", ""]))
def test_garbage_files(data, fmt, suffix):
    _read_ok_or_clear_error(_file("garbage" + suffix, data), fmt)


TAG = st.sampled_from(["O", "B-PER", "I-PER", "E-PER", "S-LOC", "L-ORG", "U-ORG", "B-", "PER", "b-PER", "I-", "X-Y",
                       "B-cell type", ""])
TOKEN = st.one_of(st.sampled_from(["Ada", "東京", "😀", "e\u0301", "שלום", "", " ", "-DOCSTART-", "\u200b"]),
                  st.text(min_size=0, max_size=5))
CONLL_LINE = st.one_of(st.tuples(TOKEN, TAG).map(lambda t: f"{t[0]}\t{t[1]}"),
                       st.tuples(TOKEN, TOKEN, TAG).map(lambda t: f"{t[0]} {t[1]} {t[2]}"),
                       st.just(""), st.just("   "), st.just("-DOCSTART- -X- O O"), TEXT)


@FUZZ
@given(lines=st.lists(CONLL_LINE, max_size=30), eol=st.sampled_from(["\n", "\r\n"]),
       scheme_fmt=st.sampled_from(["conll", None]))
def test_conll_near_valid(lines, eol, scheme_fmt):
    _read_ok_or_clear_error(_file("x.conll", eol.join(lines)), scheme_fmt)


SPAN = st.fixed_dictionaries({}, optional={"start": st.one_of(st.integers(-3, 40), TEXT, st.none(), st.booleans()),
                                           "end": st.one_of(st.integers(-3, 40), st.floats()),
                                           "label": st.one_of(st.sampled_from(["PER", "ORG", "", " "]), JSONISH),
                                           "text": TEXT, "start_offset": st.integers(-1, 30),
                                           "end_offset": st.integers(-1, 30)})
RECORD = st.fixed_dictionaries({}, optional={
    "id": st.one_of(TEXT, st.integers(), st.none()),
    "text": st.one_of(TEXT, JSONISH),
    "spans": st.one_of(st.lists(st.one_of(SPAN, JSONISH), max_size=4), JSONISH),
    "entities": st.lists(SPAN, max_size=3),
    "label": st.one_of(st.lists(st.lists(st.one_of(st.integers(-2, 30), TEXT), max_size=4), max_size=3), JSONISH),
    "tokens": st.one_of(st.lists(st.lists(st.integers(-2, 30), max_size=3), max_size=5), JSONISH),
    "metadata": JSONISH,
    "sentence": st.lists(TOKEN, max_size=6),
})


@FUZZ
@given(records=st.lists(st.one_of(RECORD, JSONISH), max_size=6), blank=st.booleans())
def test_jsonl_near_valid(records, blank):
    lines = [json.dumps(r, ensure_ascii=False) for r in records]
    if blank:
        lines.insert(len(lines) // 2, "   ")
    _read_ok_or_clear_error(_file("x.jsonl", "\n".join(lines)), "jsonl")


GENIA = st.fixed_dictionaries({}, optional={
    "sentence": st.one_of(st.lists(TOKEN, max_size=8), JSONISH),
    "ner": st.one_of(st.lists(st.fixed_dictionaries({}, optional={
        "index": st.one_of(st.lists(st.one_of(st.integers(-2, 10), st.booleans()), max_size=4), JSONISH),
        "type": st.one_of(st.sampled_from(["DNA", "protein", "", "a b"]), JSONISH)}), max_size=4), JSONISH),
    "id": JSONISH})


@FUZZ
@given(records=st.one_of(st.lists(st.one_of(GENIA, JSONISH), max_size=5), JSONISH), cut=st.integers(0, 400))
def test_genia_near_valid(records, cut):
    text = json.dumps(records, ensure_ascii=False)
    if cut % 3 == 0:
        text = text[: cut % (len(text) + 1)]  # truncated file
    _read_ok_or_clear_error(_file("x.json", text), "genia")


@FUZZ
@given(lines=st.lists(TEXT, max_size=10))
def test_text_lines_keep_their_text(lines):
    _read_ok_or_clear_error(_file("x.txt", "\n".join(lines)), "text")


# --------------------------------------------------------------------------- schema and pool files

LABEL = st.fixed_dictionaries({}, optional={"name": st.one_of(st.sampled_from(["PER", "ORG", "B-X", "", "a b"]), JSONISH),
                                            "definition": st.one_of(TEXT, JSONISH),
                                            "positive_examples": st.one_of(st.lists(TEXT, max_size=3), JSONISH),
                                            "negative_examples": JSONISH, "extra": JSONISH})
SCHEMA = st.fixed_dictionaries({}, optional={"name": JSONISH, "goal": st.one_of(TEXT, JSONISH),
                                             "labels": st.one_of(st.lists(st.one_of(LABEL, JSONISH), max_size=4), JSONISH),
                                             "description": JSONISH})
BACKEND = st.sampled_from(["openai", "anthropic", "local", "consensus", "nope", ""])
ANNOTATOR = st.fixed_dictionaries({}, optional={
    "id": st.one_of(st.sampled_from(["a", "a", "b", "bad id", ""]), JSONISH), "backend": st.one_of(BACKEND, JSONISH),
    "model": st.one_of(st.sampled_from(["gpt-x", "smollm2-135m", "m.gguf", ""]), JSONISH),
    "base_url": st.one_of(st.sampled_from(["http://x/v1", "ftp://x", ""]), JSONISH),
    "api_key_env": st.one_of(st.sampled_from(["OK_NAME", "sk-pasted-key-123", "1BAD"]), JSONISH),
    "max_concurrency": st.one_of(st.integers(-2, 5), JSONISH), "timeout_s": JSONISH,
    "structured_output": st.one_of(st.sampled_from(["json_schema", "none", "xml"]), JSONISH),
    "prompt_style": st.one_of(st.sampled_from(["chat", "fewshot", "poem"]), JSONISH), "params": JSONISH,
    "price": JSONISH, "unknown_key": JSONISH})
POOL = st.fixed_dictionaries({}, optional={"annotators": st.one_of(st.lists(st.one_of(ANNOTATOR, JSONISH), max_size=3), JSONISH),
                                           "supervisor": st.one_of(ANNOTATOR, JSONISH),
                                           "global_concurrency": JSONISH})


def _yaml_text(data, raw: str, mode: int) -> str:
    if mode == 0:
        return raw  # garbage text
    text = yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
    if mode == 2:
        text = text[: len(text) // 2]  # cut in the middle
    return text


@FUZZ
@given(data=SCHEMA, raw=TEXT, mode=st.integers(0, 2))
def test_schema_loader(data, raw, mode):
    from diziner.schema import load_schema

    p = _file("schema.yaml", _yaml_text(data, raw, mode))
    try:
        s = load_schema(p)
    except DizinerError as e:
        assert str(p) in e.one_line()
        return
    assert s.label_names and len(set(s.label_names)) == len(s.label_names)


@FUZZ
@given(data=POOL, raw=TEXT, mode=st.integers(0, 2))
def test_pool_loader(data, raw, mode):
    from diziner.llm.pool import load_pool

    p = _file("pool.yaml", _yaml_text(data, raw, mode))
    try:
        pool = load_pool(p)
    except DizinerError as e:
        msg = e.one_line()
        assert str(p) in msg
        assert "sk-pasted-key-123" not in msg  # a key pasted into api_key_env is never echoed
        return
    assert pool.annotators and len(set(pool.ids)) == len(pool.ids)
