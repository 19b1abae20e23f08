"""`diziner inspect FILE`: counts of documents, sentences, tokens, mentions, labels, problems."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer

from diziner.corpus.model import AnnotatedCorpus


def nested_count(corpus: AnnotatedCorpus) -> int:
    """Mentions that lie inside another mention of the same document (same extent included)."""
    n = 0
    for doc in corpus.documents:
        spans = sorted(set(corpus.spans_of(doc.id)), key=lambda s: (s.start, -s.end))
        for i, s in enumerate(spans):
            for j, t in enumerate(spans):
                if t.start > s.start:
                    break
                if i != j and t.start <= s.start and s.end <= t.end:
                    n += 1
                    break
    return n


def corpus_stats(corpus: AnnotatedCorpus, info: dict[str, Any] | None = None) -> dict[str, Any]:
    """The figures `diziner inspect --json` prints."""
    from diziner.corpus.readers import problem_kind

    spans = corpus.all_spans()
    labels = Counter(s.label for s in spans)
    stats: dict[str, Any] = {
        "documents": corpus.groups if corpus.groups is not None else len(corpus.documents),
        "sentences": len(corpus.documents),
        "tokens": sum(len(d.tokens or []) for d in corpus.documents),
        "mentions": len(spans),
        "labels": dict(sorted(labels.items())),
        "nested_mentions": nested_count(corpus),
        "problems": len(corpus.problems),
        "problem_kinds": dict(sorted(Counter(problem_kind(p) for p in corpus.problems).items())),
        "problem_examples": corpus.problems[:5],
    }
    if info:
        stats["format"] = info.get("format")
        if info.get("scheme"):
            stats["scheme"] = info["scheme"]
    return stats


def _print_table(path: Path, stats: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(str(path), markup=False, highlight=False, soft_wrap=True)
    head = Table(show_header=False)
    head.add_column("what")
    head.add_column("count", justify="right")
    doc_note = " (-DOCSTART- groups)" if stats["documents"] != stats["sentences"] else ""
    head.add_row("format", str(stats.get("format", "")) + (f" ({stats['scheme']})" if stats.get("scheme") else ""))
    head.add_row("documents" + doc_note, str(stats["documents"]))
    head.add_row("sentences", str(stats["sentences"]))
    head.add_row("tokens", str(stats["tokens"]))
    head.add_row("mentions", str(stats["mentions"]))
    if stats["nested_mentions"]:
        head.add_row("nested mentions", str(stats["nested_mentions"]))
    head.add_row("problems", str(stats["problems"]))
    console.print(head)
    if stats["labels"]:
        lab = Table(show_header=True)
        lab.add_column("label")
        lab.add_column("mentions", justify="right")
        lab.add_column("share", justify="right")
        total = max(1, stats["mentions"])
        for name, n in sorted(stats["labels"].items(), key=lambda kv: (-kv[1], kv[0])):
            lab.add_row(name, str(n), f"{100 * n / total:.1f}%")
        console.print(lab)
    if stats["problems"]:
        kinds = ", ".join(f"{k}: {v}" for k, v in stats["problem_kinds"].items())
        console.print(f"problems by kind: {kinds}")
        for p in stats["problem_examples"]:
            console.print(f"  {p}", markup=False, highlight=False)


def yaml_kind(path: Path) -> str | None:
    """``schema``, ``pool`` or ``guideline`` for a YAML file of ours, else None (read as a corpus)."""
    if path.suffix.lower() not in (".yaml", ".yml"):
        return None
    import yaml

    from diziner.errors import InputError

    try:
        raw = path.read_bytes()
        data = yaml.safe_load(raw.decode("utf-8"))
    except OSError as e:
        raise InputError(path, None, f"cannot read: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise InputError(path, raw[: e.start].count(b"\n") + 1, f"not valid UTF-8 (byte {e.start})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise InputError(path, mark.line + 1 if mark else None, f"invalid YAML: {getattr(e, 'problem', e)}") from None
    if not isinstance(data, dict):
        raise InputError(path, None, "a YAML file diziner reads is a mapping (a schema, a pool or a guideline)")
    if "annotators" in data:
        return "pool"
    if "schema" in data and ("common" in data or "model_specific" in data):
        return "guideline"
    if "labels" in data:
        return "schema"
    raise InputError(path, None, "neither a schema (labels:), a pool (annotators:) nor a guideline (schema:, common:)")


def config_summary(path: Path, kind: str) -> dict[str, Any]:
    """Validate a schema, pool or guideline file (its own one-line errors) and summarise it."""
    if kind == "pool":
        from diziner.llm.pool import load_pool

        pool = load_pool(path)
        sup = pool.supervisor
        return {"kind": "pool", "annotators": [{"id": a.id, "backend": a.backend, "model": a.model,
                                                "prompt_style": a.prompt_style} for a in pool.annotators],
                "supervisor": {"backend": sup.backend, "model": getattr(sup, "model", None)},
                "aggregation": pool.aggregation}
    if kind == "guideline":
        from diziner.guideline import load_guideline

        g = load_guideline(path)
        return {"kind": "guideline", "iteration": g.iteration, "labels": g.schema_.label_names,
                "common_instructions": len(g.common), "model_specific": {k: len(v) for k, v in g.model_specific.items()}}
    from diziner.schema import load_schema

    sch = load_schema(path)
    return {"kind": "schema", "labels": sch.label_names, "demonstrations": len(sch.demonstrations),
            "goal": bool(getattr(sch, "goal", ""))}


def register(app: typer.Typer) -> None:
    @app.command("inspect")
    def inspect(
        file: Annotated[Path, typer.Argument(help="Annotation file (CoNLL, JSONL, text or nested JSON), or a schema, "
                                                  "pool or guideline YAML (validated).")],
        format: Annotated[
            str | None, typer.Option("--format", "-f", help="conll, jsonl, text, genia, csv or parquet (default: detect).")
        ] = None,
        scheme: Annotated[
            str, typer.Option("--scheme", help="CoNLL tag scheme: auto, bio, iob1, iobes, bilou.")
        ] = "auto",
        as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
        text_field: Annotated[str, typer.Option("--text-field", help="The text of a JSONL record / the text column of a CSV file.")] = "text",
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing; exit 0 when the file reads.")] = False,
    ) -> None:
        """Count documents, sentences, tokens, mentions (per label) and problems in FILE.

        --json prints one object with keys documents, sentences, tokens, mentions,
        labels (label -> count), nested_mentions, problems, problem_kinds, problem_examples
        (the first five), format (and scheme, for CoNLL).

        Example: diziner inspect ../shared/benchmarks/jnlpba/test.tsv --json
        """
        from diziner.corpus.readers import read_info

        kind = yaml_kind(file) if format is None else None
        if kind is not None:  # a schema, pool or guideline: validated as one, not read as text
            stats = config_summary(file, kind)
        else:
            corpus, info = read_info(file, format, scheme=scheme, text_field=text_field)
            stats = corpus_stats(corpus, info)
        if quiet:
            return
        if as_json:
            typer.echo(json.dumps(stats, ensure_ascii=False))
        elif kind is not None:
            typer.echo(f"{file}: a valid {kind}")
            for k, v in stats.items():
                if k != "kind":
                    typer.echo(f"  {k}: {v}")
        else:
            _print_table(file, stats)
