"""The bundled example (examples/): schema, texts, gold spans and pool files are consistent."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from diziner.schema import load_schema

POOL_FILES = ["pool-local.yaml", "pools/paper-vllm.yaml", "pools/ollama.yaml", "pools/openai-anthropic.yaml"]


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def schema(examples_dir: Path):
    return load_schema(examples_dir / "schema.yaml")


@pytest.fixture(scope="module")
def lines(examples_dir: Path) -> list[str]:
    raw = (examples_dir / "texts.txt").read_text(encoding="utf-8")
    assert raw.endswith("\n") and not raw.endswith("\n\n")
    return raw.splitlines()


@pytest.fixture(scope="module")
def gold(examples_dir: Path) -> list[dict]:
    return _jsonl(examples_dir / "gold.jsonl")


def test_schema_loads_with_examples_and_demonstrations(schema) -> None:
    assert schema.label_names == ["PER", "ORG", "LOC", "PRODUCT"]
    assert schema.goal
    for lab in schema.labels:
        assert 3 <= len(lab.positive_examples) <= 6, lab.name
        assert 2 <= len(lab.negative_examples) <= 4, lab.name
        assert all(x.strip() for x in lab.positive_examples + lab.negative_examples)
    assert len(schema.demonstrations) == 3
    # demonstrations are not copies of the unlabelled documents
    texts = set((Path(__file__).resolve().parents[1] / "examples" / "texts.txt").read_text(encoding="utf-8").splitlines())
    assert not texts & {d.text for d in schema.demonstrations}


def test_texts_are_forty_short_unique_documents(lines: list[str]) -> None:
    assert len(lines) == 40
    assert len(set(lines)) == 40
    for line in lines:
        assert line == line.strip() and line
        assert 10 <= len(line.split()) <= 35, line


def test_texts_jsonl_matches_texts_txt(examples_dir: Path, lines: list[str]) -> None:
    recs = _jsonl(examples_dir / "texts.jsonl")
    assert [r["text"] for r in recs] == lines
    assert [r["id"] for r in recs] == [f"ex-{i:03d}" for i in range(1, 41)]
    assert all(set(r) == {"id", "text"} for r in recs)


def test_gold_aligns_with_texts_line_by_line(gold: list[dict], lines: list[str]) -> None:
    assert [g["text"] for g in gold] == lines
    assert [g["id"] for g in gold] == [f"ex-{i:03d}" for i in range(1, 41)]


def test_gold_offsets_match_text_and_labels_are_in_schema(gold: list[dict], schema) -> None:
    labels = set(schema.label_names)
    n = 0
    for g in gold:
        text = g["text"]
        prev_end = 0
        for s in g["spans"]:
            assert set(s) == {"start", "end", "label", "text"}
            assert 0 <= s["start"] < s["end"] <= len(text)
            assert text[s["start"]:s["end"]] == s["text"], (g["id"], s)
            assert s["text"] == s["text"].strip()
            assert s["label"] in labels
            assert s["start"] >= prev_end, f"{g['id']}: spans overlap or are unsorted"
            # spans cover whole words: no letter or digit right before or after
            before = text[s["start"] - 1] if s["start"] > 0 else " "
            after = text[s["end"]] if s["end"] < len(text) else " "
            assert not before.isalnum() and not after.isalnum(), (g["id"], s)
            prev_end = s["end"]
            n += 1
    assert n >= 100
    used = {s["label"] for g in gold for s in g["spans"]}
    assert used == labels


def test_gold_contains_the_tricky_cases(gold: list[dict]) -> None:
    """The cases the example promises: repeats, abbreviations, non-ASCII, no-entity documents."""
    span_texts = [s["text"] for g in gold for s in g["spans"]]
    assert "U.K." in span_texts and any(t.endswith("Corp.") for t in span_texts)
    assert any(any(ord(c) > 127 for c in t) for t in span_texts)
    assert any(not g["spans"] for g in gold)
    assert any(len({s["text"] for s in g["spans"]}) < len(g["spans"]) for g in gold)  # a repeated mention
    assert any("(" in g["text"] for g in gold)


def test_schema_does_not_leak_gold_mentions(schema, gold: list[dict]) -> None:
    """No positive example, quoted string of a definition or demonstration mention is a gold span,
    so scoring a run on the example measures the method, not copying from the schema."""
    gold_texts = {s["text"] for g in gold for s in g["spans"]}
    quoted = set(re.findall(r'"([^"]+)"', " ".join(lab.definition for lab in schema.labels) + schema.goal))
    examples = {x for lab in schema.labels for x in lab.positive_examples}
    demo_mentions = {m.text for d in schema.demonstrations for m in d.mentions}
    assert not (quoted | examples | demo_mentions) & gold_texts


def test_gold_reads_with_the_corpus_reader(examples_dir: Path, gold: list[dict]) -> None:
    readers = pytest.importorskip("diziner.corpus.readers")
    corpus = readers.read_corpus(examples_dir / "gold.jsonl", "jsonl")
    assert [d.id for d in corpus.documents] == [g["id"] for g in gold]
    for g in gold:
        got = sorted((s.start, s.end, s.label) for s in corpus.spans_of(g["id"]))
        assert got == [(s["start"], s["end"], s["label"]) for s in g["spans"]]


@pytest.mark.parametrize("name", POOL_FILES)
def test_pool_files_follow_the_contract(examples_dir: Path, name: str) -> None:
    data = yaml.safe_load((examples_dir / name).read_text(encoding="utf-8"))
    anns = data["annotators"]
    ids = [a["id"] for a in anns]
    assert len(ids) == len(set(ids)) >= 2
    for a in anns:
        assert a["backend"] in {"local", "openai", "anthropic"}
        assert a["model"]
        if a["backend"] == "local":
            assert a["model"] in {"smollm2-135m", "gemma-3-270m"}
        key = a.get("api_key_env")
        assert key is None or key.isupper()  # a variable name, never a key
    assert data["supervisor"]["backend"] in {"consensus", "openai", "anthropic"}


def test_paper_pool_has_eight_vllm_models(examples_dir: Path) -> None:
    data = yaml.safe_load((examples_dir / "pools" / "paper-vllm.yaml").read_text(encoding="utf-8"))
    anns = data["annotators"]
    assert len(anns) == 8
    assert all(a["backend"] == "openai" and a["base_url"].startswith("http://") for a in anns)
    assert len({a["base_url"] for a in anns}) == 8
    assert len({a["model"] for a in anns}) == 8
    assert data["supervisor"]["backend"] == "openai"


@pytest.mark.parametrize("name", POOL_FILES)
def test_pool_files_load_with_the_pool_loader(examples_dir: Path, name: str) -> None:
    pytest.importorskip("diziner.llm.factory")  # the loader validates backends through the factory
    from diziner.llm.pool import load_pool

    pool = load_pool(examples_dir / name)
    assert len(pool.ids) >= 2


def test_readme_names_every_file(examples_dir: Path) -> None:
    readme = (examples_dir / "README.md").read_text(encoding="utf-8")
    for name in ["schema.yaml", "texts.txt", "texts.jsonl", "gold.jsonl", "pool-local.yaml", *POOL_FILES[1:]]:
        assert name in readme, name
