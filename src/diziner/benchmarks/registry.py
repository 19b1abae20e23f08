"""The shared benchmark datasets: where their files are, what they contain, how to load them.

The data live outside the project in ``../shared/benchmarks`` (relative to the project
root) or wherever ``DIZINER_SHARED_BENCHMARKS`` points; they are never copied into the
repository. Counts come from the benchmark README (test) and from reading the files (dev).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from diziner.corpus.model import AnnotatedCorpus
from diziner.errors import DizinerError

ENV_VAR = "DIZINER_SHARED_BENCHMARKS"
SPLITS = ("dev", "test")


@dataclass(frozen=True)
class DatasetInfo:
    """One benchmark: ``files`` maps split -> file name inside ``folder``."""

    name: str
    title: str
    folder: str
    files: dict[str, str]
    format: str
    labels: tuple[str, ...]
    test_sentences: int
    test_mentions: int
    dev_sentences: int
    dev_mentions: int
    nested: bool = False
    groups: dict[str, int] = field(default_factory=dict)  # split -> -DOCSTART- groups, when present
    notes: str = ""

    def counts(self, split: str) -> tuple[int, int]:
        """(sentences, mentions) expected in ``split``."""
        _check_split(split)
        return (self.test_sentences, self.test_mentions) if split == "test" else (self.dev_sentences, self.dev_mentions)


_CROSSNER = {"dev": "dev.txt", "test": "test.txt"}
_CRICHTON = {"dev": "devel.tsv", "test": "test.tsv"}


DATASETS: dict[str, DatasetInfo] = {
    d.name: d
    for d in [
        DatasetInfo(
            "crossner_ai", "CrossNER AI", "crossner_ai", _CROSSNER, "conll",
            ("algorithm", "conference", "country", "field", "location", "metrics", "misc",
             "organisation", "person", "product", "programlang", "researcher", "task", "university"),
            431, 1809, 350, 1549,
        ),
        DatasetInfo(
            "crossner_literature", "CrossNER Literature", "crossner_literature", _CROSSNER, "conll",
            ("award", "book", "country", "event", "literarygenre", "location", "magazine", "misc",
             "organisation", "person", "poem", "writer"),
            416, 2266, 400, 2130,
        ),
        DatasetInfo(
            "crossner_music", "CrossNER Music", "crossner_music", _CROSSNER, "conll",
            ("album", "award", "band", "country", "event", "location", "misc", "musicalartist",
             "musicalinstrument", "musicgenre", "organisation", "person", "song"),
            465, 3336, 380, 2679,
        ),
        DatasetInfo(
            "crossner_politics", "CrossNER Politics", "crossner_politics", _CROSSNER, "conll",
            ("country", "election", "event", "location", "misc", "organisation", "person",
             "politicalparty", "politician"),
            651, 4209, 541, 3482,
        ),
        DatasetInfo(
            "crossner_science", "CrossNER Science", "crossner_science", _CROSSNER, "conll",
            ("academicjournal", "astronomicalobject", "award", "chemicalcompound", "chemicalelement",
             "country", "discipline", "enzyme", "event", "location", "misc", "organisation", "person",
             "protein", "scientist", "theory", "university"),
            543, 3089, 450, 2538,
        ),
        DatasetInfo(
            "broad_twitter_corpus", "Broad Twitter Corpus", "broad_twitter_corpus",
            {"dev": "btc.dev", "test": "btc.test"}, "conll", ("PER", "ORG", "LOC"),
            2001, 4376, 1001, 1730,
            notes="A lone '@' of a user mention is its own gold entity (1380 of 4376 test mentions, "
            "604 of 1730 dev); one whitespace-only line splits a test tweet; a few tokens are empty.",
        ),
        DatasetInfo(
            "bc5cdr", "BC5CDR (chemicals, diseases)", "bc5cdr", _CRICHTON, "conll",
            ("Chemical", "Disease"), 4797, 9809, 4581, 9593,
        ),
        DatasetInfo("anatem", "AnatEM", "anatem", _CRICHTON, "conll", ("Anatomy",), 3830, 4616, 2118, 2139),
        DatasetInfo(
            "genia", "GENIA, nested", "genia", {"dev": "dev.json", "test": "test.json"}, "genia",
            ("protein", "DNA", "cell_type", "cell_line", "RNA"), 1854, 5506, 1669, 5365, nested=True,
            notes="Nested: 631 test mentions (570 dev) lie inside another mention.",
        ),
        DatasetInfo(
            "jnlpba", "JNLPBA (flat GENIA variant)", "jnlpba", _CRICHTON, "conll",
            ("protein", "DNA", "RNA", "cell_type", "cell_line"), 3856, 8662, 1739, 4551,
            groups={"dev": 200, "test": 404},
            notes="-DOCSTART- lines separate abstracts.",
        ),
    ]
}


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise DizinerError(f"unknown split {split!r} (use dev or test)")


def _project_roots() -> list[Path]:
    """Candidate project roots: the cwd and its parents holding pyproject.toml, and the package's."""
    roots: list[Path] = []
    for start in (Path.cwd().resolve(), Path(__file__).resolve().parent):
        for p in (start, *start.parents):
            if (p / "pyproject.toml").is_file():
                if p not in roots:
                    roots.append(p)
                break
    return roots


def shared_root() -> Path:
    """The benchmark folder: ``$DIZINER_SHARED_BENCHMARKS`` or ``<project root>/../shared/benchmarks``."""
    env = os.environ.get(ENV_VAR)
    if env:
        p = Path(env).expanduser()
        if not p.is_dir():
            raise DizinerError(f"{ENV_VAR}={env} is not a folder")
        return p
    tried = []
    for root in _project_roots():
        cand = root.parent / "shared" / "benchmarks"
        if cand.is_dir():
            return cand
        tried.append(str(cand))
    raise DizinerError(
        "shared benchmarks not found" + (f" (looked in {', '.join(tried)})" if tried else ""),
        hint=f"set {ENV_VAR} to the folder that holds crossner_ai/, genia/, ...",
    )


def dataset(name: str) -> DatasetInfo:
    """The registry entry for ``name`` (folder name, e.g. ``crossner_ai``, ``genia``)."""
    key = name.strip().lower().replace("-", "_")
    if key not in DATASETS:
        raise DizinerError(f"unknown dataset {name!r} (known: {', '.join(sorted(DATASETS))})")
    return DATASETS[key]


def split_path(name: str, split: str) -> Path:
    """Path of ``split`` (dev/test) of dataset ``name``; raises if the file is missing."""
    info = dataset(name)
    _check_split(split)
    p = shared_root() / info.folder / info.files[split]
    if not p.is_file():
        raise DizinerError(f"benchmark file not found: {p}")
    return p


def load_split(name: str, split: str) -> AnnotatedCorpus:
    """Read ``split`` of dataset ``name`` with its registered format."""
    from diziner.corpus.readers import read_corpus

    info = dataset(name)
    return read_corpus(split_path(name, split), info.format)


def schema_path(name: str) -> Path:
    """``src/diziner/benchmarks/schemas/<name>.yaml`` (may not exist yet)."""
    return Path(__file__).resolve().parent / "schemas" / f"{dataset(name).name}.yaml"


__all__ = ["DATASETS", "DatasetInfo", "ENV_VAR", "SPLITS", "dataset", "load_split", "schema_path", "shared_root", "split_path"]
