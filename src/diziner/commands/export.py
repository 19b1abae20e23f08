"""`diziner export`: a run's annotations for annotation tools and training pipelines."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

_FORMATS = "label-studio, doccano, prodigy, argilla, spacy, conll, jsonl, guideline-md, label-studio-config"


def register(app: typer.Typer) -> None:
    @app.command("export")
    def export_cmd(
        run: Path = typer.Argument(..., help="A refine run directory, or a JSONL spans file ({\"id\",\"text\",\"spans\"})."),
        fmt: str = typer.Option(..., "--format", "-f", help=f"One of: {_FORMATS}."),
        out: Path = typer.Option(..., "--out", "-o", help="Output file."),
        source: str = typer.Option("consensus", "--source", help="consensus, or an annotator id (final/by_annotator/<id>.jsonl)."),
        force: bool = typer.Option(False, "--force", help="Replace --out if it exists (never an input file)."),
        max_support: Optional[float] = typer.Option(None, "--max-support", help="Only documents with a span whose support "
                                                    "weight is at most this (the doubtful ones, for human review)."),
        hotspots_only: bool = typer.Option(False, "--hotspots-only", help="Only documents with a span in a hotspot "
                                           "(with --max-support: either)."),
        as_json: bool = typer.Option(False, "--json", help="Print the counts as JSON."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing on success."),
    ) -> None:
        """Export the consensus (or one annotator's) annotation of a run, or the final
        guideline as Markdown.

        Formats: label-studio (tasks with predictions and per-region scores), doccano JSONL,
        prodigy JSONL, argilla-style JSONL (suggestions with score, agent, hotspot flag),
        spacy (DocBin .spacy; needs the spacy extra), conll (BIO), jsonl (spans), guideline-md.

        Example: diziner export runs/news --format label-studio --out news-tasks.json
        """
        from diziner.export import export

        res = export(run, fmt, out, source=source, force=force, max_support=max_support, hotspots_only=hotspots_only)
        if quiet:
            return
        if as_json:
            typer.echo(json.dumps(res, ensure_ascii=False))
            return
        msg = f"wrote {res['out']} ({fmt}"
        if "documents" in res:
            msg += f", {res['documents']} documents, {res['spans']} spans"
            if "selected_documents" in res:
                msg += f" (the doubtful {res['selected_documents']} of {res['of_documents']})"
            if res.get("skipped_failed"):
                msg += f", {res['skipped_failed']} failed documents left out"
            for k in ("expanded", "unalignable", "not_in_ents", "dropped_overlapping"):
                if res.get(k):
                    msg += f", {res[k]} {k.replace('_', ' ')}"
        typer.echo(msg + ")")
