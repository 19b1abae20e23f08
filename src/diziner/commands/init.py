"""`diziner init DIR`: scaffold a project folder (schema, pool, texts) to start from.

Writes ``DIR/schema.yaml`` (a starter schema Σ with goal G), ``DIR/pool.yaml`` (the
embedded two-model pool, with commented alternatives for vLLM, Ollama, OpenAI and
Anthropic) and ``DIR/texts.txt`` (a few documents, one per line). Existing files are
never overwritten unless ``--force`` is given; files are written atomically.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from diziner.atomic import write_text
from diziner.errors import DizinerError

STARTER_SCHEMA = """\
# The schema: the labels (Σ) and the task goal (G). Σ never changes during refinement;
# the guideline built from it does. Edit the labels, definitions and examples for your
# data. Check the file with:  python -c "from diziner.schema import load_schema; load_schema('schema.yaml')"
name: my-ner-task
description: People, organisations and places in short news items.
goal: >-
  Find every mention of a named person, organisation or location in the text and give
  it one of the labels PER, ORG or LOC. Tag the name only: leave out a leading "the",
  titles such as "Dr." or "minister", and a possessive "'s". Tag every occurrence.
labels:
  - name: PER
    definition: >-
      A named individual person (full name, surname or first name). Titles and roles
      are not part of the span.
    positive_examples: ["Grace Hopper", "Okafor", "Hopper"]
    negative_examples: ["the minister", "engineers", "she"]
  - name: ORG
    definition: >-
      A named organisation: a company, government body, university, club, charity or
      international body. Keep legal suffixes such as "Inc." or "Ltd." in the span.
    positive_examples: ["Acme Inc.", "World Health Organization", "University of Ghana"]
    negative_examples: ["the company", "the government", "a startup"]
  - name: LOC
    definition: >-
      A named place: a country, region, city, district, river, mountain or other
      geographic location. Adjectives of nationality ("French") are not places.
    positive_examples: ["Kenya", "Lake Geneva", "São Paulo"]
    negative_examples: ["French", "the capital", "abroad"]
# Optional: a few sentences with their correct mentions, shown as few-shot examples.
# Every mention's text must occur in its sentence, and its label must be one of the above.
demonstrations:
  - text: "Acme Inc. hired Grace Hopper to open its office in Nairobi."
    mentions:
      - {text: "Acme Inc.", label: ORG}
      - {text: "Grace Hopper", label: PER}
      - {text: "Nairobi", label: LOC}
  - text: "The minister said the new bridge over the river would open in spring."
    mentions: []
    rationale: Roles and common nouns are not names.
"""

STARTER_POOL = """\
# The pool: the annotators (LLMs) that tag the same documents, and the supervisor that
# rewrites the guideline from their disagreement. API keys are never written here:
# api_key_env names the environment variable that holds the key.
#
# Default: two tiny models that run in-process with llama.cpp on a CPU (no server, no key).
annotators:
  - id: gemma                 # unique; used in file names and reports
    backend: local            # local | openai | anthropic
    model: gemma-3-270m       # local models: smollm2-135m | gemma-3-270m
    prompt_style: fewshot     # fewshot (completion) | chat
  - id: smollm2
    backend: local
    model: smollm2-135m
    prompt_style: chat

  # --- vLLM (or any OpenAI-compatible server), e.g. `vllm serve Qwen/Qwen3-14B --port 8000`:
  # - id: qwen
  #   backend: openai
  #   model: Qwen/Qwen3-14B
  #   base_url: http://127.0.0.1:8000/v1
  #   api_key_env: VLLM_API_KEY          # the NAME of an environment variable, never the key
  #   max_concurrency: 16
  #   structured_output: json_schema     # json_schema | json_object_schema | grammar | ollama_format | none
  #   params: {temperature: 0, max_tokens: 2048}

  # --- Ollama (`ollama pull llama3.1:8b`; no key needed):
  # - id: llama
  #   backend: openai
  #   model: llama3.1:8b
  #   base_url: http://127.0.0.1:11434/v1
  #   max_concurrency: 2
  #   structured_output: ollama_format
  #   params: {temperature: 0}

  # --- OpenAI API (export OPENAI_API_KEY=...):
  # - id: gpt
  #   backend: openai
  #   model: gpt-5-mini
  #   api_key_env: OPENAI_API_KEY
  #   max_concurrency: 8

  # --- Anthropic API (export ANTHROPIC_API_KEY=...):
  # - id: claude
  #   backend: anthropic
  #   model: claude-haiku-4-5
  #   api_key_env: ANTHROPIC_API_KEY
  #   max_concurrency: 4
  #   params: {temperature: 0, max_tokens: 2048}

supervisor:
  backend: consensus          # consensus (label-free, no LLM) | openai | anthropic
  # backend: openai
  # model: gpt-5-mini
  # api_key_env: OPENAI_API_KEY
"""

STARTER_TEXTS = """\
Acme Inc. opened a research office in Accra, its first in West Africa.
Grace Hopper told reporters in Boston that the project would take three years.
The World Health Organization praised the new clinic, which the city of Lyon built with help from a local charity.
Shares of Borealis Shipping fell after the company lost a contract with the port of Rotterdam.
Engineers from the University of Ghana will test the sensors along the Volta River next month.
"""

FILES: tuple[tuple[str, str], ...] = (
    ("schema.yaml", STARTER_SCHEMA),
    ("pool.yaml", STARTER_POOL),
    ("texts.txt", STARTER_TEXTS),
)


def next_steps(folder: Path) -> list[str]:
    """The commands a user runs after ``init``, as lines of text."""
    d = folder.as_posix()
    return [
        f"1. Edit {d}/schema.yaml: your labels, their definitions and examples, and the goal.",
        f"2. Put your documents in {d}/texts.txt, one per line (or use a JSONL file with id and text).",
        f"3. Choose the annotators in {d}/pool.yaml (the embedded models need `pip install 'diziner[local]'`).",
        f"4. Check the input:  diziner inspect {d}/texts.txt",
        f"5. Refine the guideline and annotate:  diziner refine --schema {d}/schema.yaml "
        f"--texts {d}/texts.txt --pool {d}/pool.yaml --out {d}/run",
    ]


def scaffold(folder: str | Path, force: bool = False) -> list[Path]:
    """Create ``folder`` (if needed) and write the starter files; return their paths.

    Raises :class:`DizinerError` when ``folder`` is a file, or when a starter file already
    exists and ``force`` is false (then nothing is written).
    """
    d = Path(folder)
    if d.exists() and not d.is_dir():
        raise DizinerError(f"{d}: exists and is not a folder")
    targets = [(d / name, text) for name, text in FILES]
    if not force:
        existing = [p for p, _ in targets if p.exists()]
        if existing:
            names = ", ".join(str(p) for p in existing)
            verb = "exists" if len(existing) == 1 else "exist"
            raise DizinerError(f"{names} already {verb}; nothing written", hint="use --force to overwrite")
    for p, _ in targets:
        if p.exists() and not p.is_file():
            raise DizinerError(f"{p}: exists and is not a regular file")
    try:
        d.mkdir(parents=True, exist_ok=True)
        for p, text in targets:
            write_text(p, text)
    except OSError as e:
        raise DizinerError(f"{e.filename or d}: cannot write: {e.strerror or e}") from None
    return [p for p, _ in targets]


def register(app: typer.Typer) -> None:
    @app.command("init")
    def init(
        folder: Annotated[Path, typer.Argument(help="Folder to create the starter files in (created if missing).")],
        force: Annotated[bool, typer.Option("--force", help="Overwrite existing schema.yaml, pool.yaml, texts.txt.")] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Print the created files and next steps as JSON.")] = False,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing.")] = False,
    ) -> None:
        """Scaffold a starter project: schema.yaml, pool.yaml (embedded models) and texts.txt.

        Refuses to overwrite existing files unless --force is given.

        Example: diziner init my-project
        """
        created = scaffold(folder, force=force)
        steps = next_steps(folder)
        if quiet:
            return
        if as_json:
            typer.echo(json.dumps({"created": [str(p) for p in created], "next_steps": steps}))
            return
        typer.echo("Created " + ", ".join(str(p) for p in created))
        typer.echo("Next steps:")
        for s in steps:
            typer.echo(f"  {s}")
