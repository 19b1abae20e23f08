"""The benchmark schema files (src/diziner/benchmarks/schemas/*.yaml)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from diziner.schema import load_schema

SCHEMAS = Path(__file__).resolve().parents[1] / "src" / "diziner" / "benchmarks" / "schemas"

# dataset folder -> dev file and its kind (read here directly, so the test needs no reader)
DEV_FILES = {
    "crossner_ai": "dev.txt",
    "crossner_literature": "dev.txt",
    "crossner_music": "dev.txt",
    "crossner_politics": "dev.txt",
    "crossner_science": "dev.txt",
    "broad_twitter_corpus": "btc.dev",
    "bc5cdr": "devel.tsv",
    "anatem": "devel.tsv",
    "genia": "dev.json",
    "jnlpba": "devel.tsv",
}
NAMES = sorted(DEV_FILES)


def dev_tags(path: Path) -> set[str]:
    """Entity types used in a dev file: BIO columns (token TAB tag) or GENIA nested JSON."""
    if path.suffix == ".json":
        return {e["type"] for s in json.loads(path.read_text(encoding="utf-8")) for e in s["ner"]}
    tags: set[str] = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split("\t")
        if len(parts) < 2 or line.startswith("-DOCSTART-"):
            continue
        tag = parts[-1].strip()
        if tag and tag != "O":
            tags.add(tag.split("-", 1)[1] if tag[:2] in ("B-", "I-", "E-", "S-", "L-", "U-") else tag)
    return tags


def test_there_is_one_schema_per_dataset() -> None:
    assert sorted(p.stem for p in SCHEMAS.glob("*.yaml")) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_schema_loads_and_is_complete(name: str) -> None:
    s = load_schema(SCHEMAS / f"{name}.yaml")
    assert s.name == name
    assert s.description and s.goal
    for lab in s.labels:
        assert len(lab.definition.split()) >= 8, f"{name}/{lab.name}: definition too short"
        assert 3 <= len(lab.positive_examples) <= 6, f"{name}/{lab.name}"
        assert 2 <= len(lab.negative_examples) <= 4, f"{name}/{lab.name}"
        assert all(x.strip() for x in lab.positive_examples), f"{name}/{lab.name}: empty positive example"
        assert all(x.strip() for x in lab.negative_examples), f"{name}/{lab.name}: empty negative example"
        # an example is not both positive and negative for the same label
        assert not set(lab.positive_examples) & set(lab.negative_examples)
    assert len(s.demonstrations) == 3
    for d in s.demonstrations:
        assert d.mentions, f"{name}: a demonstration without mentions"


@pytest.mark.parametrize("name", NAMES)
def test_schema_labels_match_the_registry(name: str) -> None:
    from diziner.benchmarks.registry import DATASETS, schema_path

    s = load_schema(schema_path(name))
    assert set(s.label_names) == set(DATASETS[name].labels)


@pytest.mark.parametrize("name", NAMES)
def test_schema_labels_equal_the_dev_tag_set(name: str, shared_benchmarks: Path) -> None:
    s = load_schema(SCHEMAS / f"{name}.yaml")
    assert set(s.label_names) == dev_tags(shared_benchmarks / name / DEV_FILES[name])


@pytest.mark.parametrize("name", NAMES)
def test_demonstrations_are_not_copied_from_the_test_split(name: str, shared_benchmarks: Path) -> None:
    """Each demonstration is an original sentence: its text is not a test (or dev) sentence."""
    s = load_schema(SCHEMAS / f"{name}.yaml")
    demo = {"".join(d.text.split()) for d in s.demonstrations}  # compare without whitespace
    folder = shared_benchmarks / name
    for f in folder.iterdir():
        raw = f.read_text(encoding="utf-8")
        if f.suffix == ".json":
            sentences = {"".join(x["sentence"]) for x in json.loads(raw)}
        else:
            sentences, cur = set(), []
            for line in raw.splitlines() + [""]:
                if not line.strip():
                    if cur:
                        sentences.add("".join(cur))
                    cur = []
                else:
                    cur.append(line.split("\t")[0])
        assert not demo & sentences, f"{name}: demonstration found in {f.name}"
