"""`diziner evaluate --gold G --pred P`: strict span P/R/F1 (micro, macro, per label)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer


def _print_tables(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    t = Table(title=f"strict span scores ({result['documents']} documents, matched by {result['matched_by']})",
              title_justify="left")
    for col in ("label", "precision", "recall", "f1", "support", "tp", "fp", "fn"):
        t.add_column(col, justify="left" if col == "label" else "right")
    for lab, r in result["per_label"].items():
        t.add_row(lab, f"{r['precision']:.4f}", f"{r['recall']:.4f}", f"{r['f1']:.4f}",
                  str(r["support"]), str(r["tp"]), str(r["fp"]), str(r["fn"]))
    m = result["micro"]
    t.add_section()
    t.add_row("micro", f"{m['precision']:.4f}", f"{m['recall']:.4f}", f"{m['f1']:.4f}",
              str(m["tp"] + m["fn"]), str(m["tp"]), str(m["fp"]), str(m["fn"]))
    a = result["macro"]
    t.add_row("macro", f"{a['precision']:.4f}", f"{a['recall']:.4f}",
              f"{a['f1']:.4f}", "", "", "", "")
    console.print(t)
    console.print(f"macro = mean over the {a['labels']} labels present in gold")
    if "views" in result:
        v = Table(title="views (docs/evaluation.md)", title_justify="left")
        for col in ("view", "precision", "recall", "f1", "correct", "incorrect", "partial", "missed", "spurious"):
            v.add_column(col, justify="left" if col == "view" else "right")
        for name, r in result["views"].items():
            v.add_row(name, f"{r['precision']:.4f}", f"{r['recall']:.4f}", f"{r['f1']:.4f}",
                      *(str(r[k]) for k in ("correct", "incorrect", "partial", "missed", "spurious")))
        console.print(v)


def register(app: typer.Typer) -> None:
    @app.command("evaluate")
    def evaluate(
        gold: Annotated[Path, typer.Option("--gold", "-g", help="Gold annotation file.")],
        pred: Annotated[Path, typer.Option("--pred", "-p", help="Predicted annotation file.")],
        format: Annotated[
            str | None, typer.Option("--format", "-f", help="Format of both files: conll, jsonl, genia (default: detect).")
        ] = None,
        gold_format: Annotated[str | None, typer.Option("--gold-format", help="Format of the gold file only.")] = None,
        pred_format: Annotated[str | None, typer.Option("--pred-format", help="Format of the pred file only.")] = None,
        text_field: Annotated[
            str, typer.Option("--text-field", help="The text of a JSONL record / the text column of a CSV file.")
        ] = "text",
        by: Annotated[str, typer.Option("--by", help="Match documents by: auto, id or order.")] = "auto",
        subset: Annotated[
            bool, typer.Option("--subset", help="Score only the gold documents that pred contains (by id).")
        ] = False,
        views: Annotated[
            bool, typer.Option("--views", help="Also report the strict/exact/partial/type views.")
        ] = False,
        snap_tokens: Annotated[
            bool, typer.Option("--snap-tokens", help="Snap predicted spans to the gold tokens first, as the run's "
                               "own figures are scored (docs/evaluation.md).")
        ] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the micro F1.")] = False,
    ) -> None:
        """Score predicted spans against gold: strict span precision, recall, F1.

        A span is correct when document, start, end and label all match. Micro counts
        over all spans; macro averages over the labels present in gold. Documents are
        matched by id, or by order for two files of the same sentences (e.g. CoNLL).

        Example: diziner evaluate --gold ../shared/benchmarks/anatem/test.tsv --pred run/final/annotations.jsonl --json
        """
        from diziner.corpus.readers import read_corpus
        from diziner.evaluate import evaluate_corpora

        g = read_corpus(gold, gold_format or format, text_field=text_field)
        p = read_corpus(pred, pred_format or format, text_field=text_field)
        result = evaluate_corpora(g, p, by=by, subset=subset, views=views, snap=snap_tokens)
        if as_json:
            typer.echo(json.dumps(result, ensure_ascii=False))
        elif quiet:
            typer.echo(f"{result['micro']['f1']:.4f}")
        else:
            _print_tables(result)
