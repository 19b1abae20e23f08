"""Shared test fixtures."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_BENCHMARKS = ROOT.parent / "shared" / "benchmarks"
EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="session")
def shared_benchmarks() -> Path:
    """Path to ../shared/benchmarks; skips the test when the folder is absent."""
    if not SHARED_BENCHMARKS.is_dir():
        pytest.skip(f"shared benchmarks not found at {SHARED_BENCHMARKS} (tests on real data skipped)")
    return SHARED_BENCHMARKS


@pytest.fixture(scope="session")
def examples_dir() -> Path:
    return EXAMPLES


# ---- shared by the streamed and the Ray engine tests: the scripted server's title-word answers

CORPUS_WORDS = ["Acme", "Borealis", "Nadia", "Oslo", "Zephyr", "Quill", "Mira", "Tokyo", "Vantage", "Ilse",
                "said", "the", "new", "plans", "in", "with", "a", "deal", "for", "today", "and", "its"]


def make_corpus(n: int, seed: int = 3, width: int = 4):
    """``n`` short documents of ``CORPUS_WORDS`` (ids ``d0000``...), the same for the same seed."""
    import random

    from diziner.corpus.model import Document

    rng = random.Random(seed)
    return [Document(f"d{i:0{width}d}", " ".join(rng.choice(CORPUS_WORDS) for _ in range(rng.randint(3, 12))) + ".")
            for i in range(n)]


@pytest.fixture(scope="module")
def server():
    """The scripted OpenAI-compatible server answering with the capitalised words of a text
    (a module that needs another server defines its own ``server``)."""
    from diziner.testing.faults import title_word_responder
    from diziner.testing.server import TestServer

    with TestServer(title_word_responder, keep_requests=False) as srv:
        yield srv


@pytest.fixture(scope="module")
def guideline(examples_dir: Path):
    """The iteration-0 guideline of examples/schema.yaml."""
    from diziner.guideline import Guideline
    from diziner.schema import load_schema

    return Guideline.initial(load_schema(examples_dir / "schema.yaml"))


def refined_with_marker(guideline, iteration: int = 3):
    """A guideline that differs from ``guideline`` by one common instruction the scripted
    server reacts to (see ``marker_responder``)."""
    from diziner.guideline import Instruction

    return guideline.model_copy(update={"iteration": iteration,
                                        "common": [Instruction(id="1", text="ALSO-LOWER: tag lower-case nouns as LOC.")]})


def marker_responder(body: dict) -> str:
    """The title-word annotators; a request whose guideline carries ALSO-LOWER also tags the
    first lower-case word of four letters or more as LOC (so the two guidelines disagree)."""
    import re

    from diziner.testing.faults import fenced_document, title_word_responder

    out = json.loads(title_word_responder(body))
    doc = fenced_document(body) or ""
    if "ALSO-LOWER" in json.dumps(body).replace(doc, ""):
        m = re.search(r"\b[a-z]{4,}\b", doc)
        if m:
            out["mentions"].append({"text": m.group(0), "label": "LOC"})
    return json.dumps(out)
