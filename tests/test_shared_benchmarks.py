"""`diziner inspect` on every shared benchmark file reproduces the README's counts."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from diziner.benchmarks import registry
from diziner.benchmarks.registry import DATASETS, dataset, load_split, schema_path, shared_root, split_path
from diziner.cli import main
from diziner.errors import DizinerError

pytestmark = pytest.mark.benchmarks


def readme_rows(root: Path) -> dict[str, tuple[int, int, list[str]]]:
    """folder -> (test sentences, test mentions, labels) parsed from the benchmark README table."""
    rows = {}
    for line in (root / "README.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 7 or not re.fullmatch(r"\d+ / \d+", cells[4]):
            continue
        sents, ments = (int(x) for x in cells[4].split(" / "))
        labels = [x.strip() for x in cells[5].split(":", 1)[1].split(",")] if ":" in cells[5] else []
        rows[cells[0]] = (sents, ments, labels)
    return rows


def inspect_json(path: Path, capsys) -> dict:
    assert main(["inspect", str(path), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_registry_matches_readme(shared_benchmarks):
    rows = readme_rows(shared_benchmarks)
    assert set(rows) == {d.folder for d in DATASETS.values()} and len(rows) == 10
    for d in DATASETS.values():
        sents, ments, labels = rows[d.folder]
        assert (d.test_sentences, d.test_mentions) == (sents, ments)
        if labels:  # CrossNER rows list their labels
            assert sorted(d.labels) == sorted(labels)
        for split in ("dev", "test"):
            assert (shared_benchmarks / d.folder / d.files[split]).is_file()


@pytest.mark.parametrize("name", sorted(DATASETS))
@pytest.mark.parametrize("split", ["dev", "test"])
def test_inspect_counts(shared_benchmarks, capsys, name, split):
    d = DATASETS[name]
    path = shared_benchmarks / d.folder / d.files[split]
    stats = inspect_json(path, capsys)
    assert (stats["sentences"], stats["mentions"]) == d.counts(split)
    if split == "test":
        rows = readme_rows(shared_benchmarks)
        assert (stats["sentences"], stats["mentions"]) == rows[d.folder][:2]
    assert set(stats["labels"]) <= set(d.labels)
    assert sum(stats["labels"].values()) == stats["mentions"]
    assert stats["documents"] == d.groups.get(split, stats["sentences"])
    assert stats["format"] == d.format


def test_btc_quirks(shared_benchmarks, capsys):
    stats = inspect_json(shared_benchmarks / "broad_twitter_corpus" / "btc.test", capsys)
    assert stats["problem_kinds"] == {"empty-token": 3, "whitespace-line": 1}
    test = load_split("broad_twitter_corpus", "test")
    dev = load_split("broad_twitter_corpus", "dev")
    assert sum(s.text == "@" for s in test.all_spans()) == 1380
    assert sum(s.text == "@" for s in dev.all_spans()) == 604
    # No empty token survives, and the texts have no double spaces.
    assert all(d.text == " ".join(d.token_texts) for d in test.documents)


def test_genia_nested_and_jnlpba_groups(shared_benchmarks, capsys):
    assert inspect_json(shared_benchmarks / "genia" / "test.json", capsys)["nested_mentions"] == 631
    assert inspect_json(shared_benchmarks / "genia" / "dev.json", capsys)["nested_mentions"] == 570
    c = load_split("jnlpba", "test")
    assert c.groups == 404 and c.documents[-1].metadata["group"] == 403
    assert not any("DOCSTART" in d.text for d in c.documents)


def test_registry_api(shared_benchmarks, monkeypatch, tmp_path):
    assert shared_root().resolve() == shared_benchmarks.resolve()
    assert split_path("crossner_ai", "test").name == "test.txt"
    assert dataset("CrossNER-AI").name == "crossner_ai"
    assert schema_path("genia").name == "genia.yaml" and schema_path("genia").parent.name == "schemas"
    with pytest.raises(DizinerError, match="unknown dataset"):
        dataset("conll2003")
    with pytest.raises(DizinerError, match="unknown split"):
        split_path("genia", "train")
    monkeypatch.setenv(registry.ENV_VAR, str(tmp_path / "absent"))
    with pytest.raises(DizinerError, match="is not a folder"):
        shared_root()
    monkeypatch.setenv(registry.ENV_VAR, str(tmp_path))
    with pytest.raises(DizinerError, match="benchmark file not found"):
        load_split("genia", "test")


def test_shared_root_missing_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.delenv(registry.ENV_VAR, raising=False)
    monkeypatch.setattr(registry, "_project_roots", lambda: [tmp_path])
    with pytest.raises(DizinerError, match="shared benchmarks not found") as ei:
        shared_root()
    assert registry.ENV_VAR in ei.value.one_line()
