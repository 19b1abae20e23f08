"""`diziner analyze`: disagreement analysis of several annotations of the same documents."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from diziner.errors import InputError


def _unique_names(paths: list[Path]) -> list[str]:
    names: list[str] = []
    for p in paths:
        base = p.stem or p.name
        name, i = base, 2
        while name in names:
            name, i = f"{base}-{i}", i + 1
        names.append(name)
    return names


def _where(path: Path, doc: Any) -> str:
    line = (doc.metadata or {}).get("line") if doc is not None else None
    return f"{path}:{line}" if line else str(path)


def load_annotations(
    paths: list[Path], names: list[str], format: str | None = None, text_field: str = "text"
) -> tuple[list, dict[str, dict[str, list]], list[str]]:
    """Read every file; match documents to the first file's; return (documents, annotations, problems).

    CoNLL files are matched by order (sentence i with sentence i, same tokens); other
    formats by document id (same set of ids, same text).
    """
    from diziner.corpus.readers import read_info

    ref = None
    annotations: dict[str, dict[str, list]] = {}
    problems: list[str] = []
    for path, name in zip(paths, names):
        corpus, info = read_info(path, format, text_field=text_field)
        problems += corpus.problems
        if ref is None:
            ref = _Reference(path, corpus.documents, info.get("format"))
            annotations[name] = {d.id: list(corpus.spans_of(d.id)) for d in corpus.documents}
        elif info.get("format") == "conll" or ref.format == "conll":
            annotations[name] = ref.by_order(path, corpus)
        else:
            annotations[name] = ref.by_id(path, corpus)
    return list(ref.docs if ref else []), annotations, problems


class _Reference:
    """The first file's documents, which every other file must cover."""

    def __init__(self, path: Path, docs: list, format: str | None):
        self.path, self.docs, self.format = path, docs, format

    def by_order(self, path: Path, corpus: Any) -> dict[str, list]:
        """Sentence i with sentence i (same tokens); spans re-keyed to the reference ids."""
        from diziner.corpus.model import Span

        docs = corpus.documents
        if len(docs) != len(self.docs):
            raise InputError(
                path, None, f"{len(docs)} documents, but {self.path} has {len(self.docs)} (annotations must cover the same documents)"
            )
        mapped: dict[str, list] = {}
        for d, r in zip(docs, self.docs):
            if d.token_texts != r.token_texts:
                raise InputError(
                    path,
                    (d.metadata or {}).get("line"),
                    f"document differs from the one at {_where(self.path, r)} (tokens {d.token_texts[:6]!r}… vs "
                    f"{r.token_texts[:6]!r}…)",
                )
            mapped[r.id] = [Span(r.id, s.start, s.end, s.label, s.text) for s in corpus.spans_of(d.id)]
        return mapped

    def by_id(self, path: Path, corpus: Any) -> dict[str, list]:
        """The same set of ids, each with the same text."""
        ref_by_id = {r.id: r for r in self.docs}
        mapped: dict[str, list] = {}
        for d in corpus.documents:
            r = ref_by_id.get(d.id)
            if r is None:
                raise InputError(path, (d.metadata or {}).get("line"), f"document id {d.id!r} is not in {self.path}")
            if d.text != r.text:
                raise InputError(
                    path, (d.metadata or {}).get("line"), f"document {d.id!r} has another text than in {_where(self.path, r)}"
                )
            mapped[d.id] = list(corpus.spans_of(d.id))
        missing = [r.id for r in self.docs if r.id not in mapped]
        if missing:
            raise InputError(
                path, None, f"{len(missing)} document(s) of {self.path} are missing, first {missing[0]!r}"
            )
        return mapped


def register(app: typer.Typer) -> None:
    from diziner.options import DEFAULTS

    analysis = DEFAULTS.analysis

    @app.command("analyze")
    def analyze_cmd(
        files: list[Path] = typer.Argument(..., help="Two or more annotation files of the same documents."),
        out: Path = typer.Option(..., "--out", "-o", help="Folder for analysis.json and report.md."),
        format: str | None = typer.Option(None, "--format", "-f", help="conll, jsonl, genia, text, csv or parquet (default: detect)."),
        text_field: str = typer.Option("text", "--text-field", help="The text of a JSONL record / the text column of a CSV file."),
        names: str | None = typer.Option(None, "--names", help="Comma-separated annotator names (default: file names)."),
        labels: str | None = typer.Option(None, "--labels", help="Comma-separated label order (default: sorted labels used)."),
        percentile: float = typer.Option(analysis.percentile, "--percentile", help="Hotspot threshold: percentile of the hot score H = max(U*, 2·D_type) over tokens with U* > 0."),
        weights: str = typer.Option(analysis.weights, "--weights", help="Annotator weights: f1 or hybrid (F1 + Cohen kappa)."),
        examples: int = typer.Option(analysis.examples_per_pattern, "--examples", help="Examples kept per error type and annotator."),
        as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing; only write the files."),
    ) -> None:
        """Analyse the disagreement between annotations of the same documents.

        Computes annotator weights, the elite set, per-token disagreement scores
        (D_conf, D_type, U_bnd, U*), hotspots with categories and error types, error
        profiles and agreement figures (span F1, Cohen/Fleiss kappa, Krippendorff alpha).
        Writes OUT/analysis.json and OUT/report.md. CoNLL files are matched sentence by
        sentence, other formats by document id.

        Example: diziner analyze gpt.jsonl qwen.jsonl llama.jsonl --out analysis/ --names gpt,qwen,llama
        """
        from diziner.analysis import analyze
        from diziner.corpus.writers import atomic_write_text

        if len(files) < 2:
            raise InputError(None, None, "give at least two annotation files")
        for f in files:
            if not f.is_file():
                raise InputError(f, None, "file not found")
        if weights not in ("f1", "hybrid"):
            raise InputError(None, None, f"--weights must be f1 or hybrid, got {weights!r}")
        if not 0.0 <= percentile <= 100.0:
            raise InputError(None, None, f"--percentile must be within [0, 100], got {percentile:g}")
        if examples < 0:
            raise InputError(None, None, f"--examples must be at least 0, got {examples}")
        if names:
            ann_names = [n.strip() for n in names.split(",")]
            if len(ann_names) != len(files) or any(not n for n in ann_names):
                raise InputError(None, None, f"--names gives {len(ann_names)} names for {len(files)} files")
            if len(set(ann_names)) != len(ann_names):
                raise InputError(None, None, "--names contains duplicates")
        else:
            ann_names = _unique_names(files)
        resolved_out = out.resolve()
        if any(f.resolve() in (resolved_out / "analysis.json", resolved_out / "report.md") for f in files):
            raise InputError(out, None, "the output folder would overwrite an input file")
        label_list = [x.strip() for x in labels.split(",") if x.strip()] if labels else None
        documents, annotations, problems = load_annotations(list(files), ann_names, format, text_field)
        result = analyze(documents, annotations, labels=label_list, weights=weights, percentile=percentile,
                         examples_per_pattern=examples)
        result.problems[:0] = problems
        atomic_write_text(out / "analysis.json", json.dumps(result.to_json(), ensure_ascii=False, indent=1) + "\n")
        atomic_write_text(out / "report.md", result.to_markdown())
        summary = {
            "analysis": str(out / "analysis.json"),
            "report": str(out / "report.md"),
            "annotators": result.annotators,
            "weights": {k: round(v, 4) for k, v in result.weights.items()},
            "elite": result.elite,
            "mean_pairwise_f1": result.mean_agreement,
            "fleiss_kappa": result.agreement["fleiss_kappa"],
            "krippendorff_alpha": result.agreement["krippendorff_alpha"],
            **{k: v for k, v in result.summary.items() if k in ("n_documents", "n_tokens", "n_hotspots", "by_category", "by_error_type")},
            "problems": len(result.problems),
        }
        if quiet:
            return
        if as_json:
            typer.echo(json.dumps(summary, ensure_ascii=False))
            return
        _print_summary(result, summary)


def _print_summary(result: Any, summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console()
    ag = result.agreement

    def fmt(x: float | None) -> str:
        return "–" if x is None else f"{x:.3f}"

    con.print(
        f"{summary['n_documents']} documents, {summary['n_tokens']} tokens, {len(result.annotators)} annotators · "
        f"mean span F1 {fmt(result.mean_agreement)} · Fleiss κ {fmt(ag['fleiss_kappa'])} · "
        f"Krippendorff α {fmt(ag['krippendorff_alpha'])}",
        highlight=False,
    )
    table = Table("annotator", "weight", "elite", "spans", "spurious", "missed", "type", "boundary")
    elite = set(result.elite)
    for n in result.annotators:
        p = result.profiles[n]
        table.add_row(
            n, f"{result.weights[n]:.3f}", "✓" if n in elite else "", str(p["n_spans"]), str(p["spurious"]),
            str(p["missed"]), str(p["type_confusion"]), str(p["boundary"]),
        )
    con.print(table)
    cats = ", ".join(f"{k} {v}" for k, v in summary["by_category"].items())
    con.print(f"{summary['n_hotspots']} hotspots ({cats})", highlight=False)
    if result.problems:
        con.print(f"{len(result.problems)} problem(s) while reading; see problems in analysis.json", highlight=False)
    con.print(f"wrote {summary['analysis']} and {summary['report']}", highlight=False)
