"""`diziner report`: one self-contained HTML file for a run directory or an analyze folder."""
from __future__ import annotations

import json
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("report")
    def report(
        path: Path = typer.Argument(..., help="A refine run directory, a `diziner analyze` folder, or an analysis.json."),
        out: Path | None = typer.Option(None, "--out", "-o", help="Output HTML file (default: DIR/report.html)."),
        force: bool = typer.Option(False, "--force", help="Replace --out even when it is not a diziner report."),
        as_json: bool = typer.Option(False, "--json", help="Print {\"report\": path, ...} as JSON."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing on success."),
    ) -> None:
        """Write a self-contained HTML report (charts, pairwise agreement, hotspot browser,
        guidelines with diffs, usage) that opens offline in any browser.

        An existing --out file is replaced only when it is a diziner report, unless --force.

        Example: diziner report runs/news --out news-report.html
        """
        from diziner.report import build_report, load_report_data

        target = build_report(path, out, force=force)
        if quiet:
            return
        if as_json:
            data = load_report_data(path)
            typer.echo(json.dumps({"report": str(target), "kind": data.kind,
                                   "iterations": len(data.iterations),
                                   "hotspots": sum(len(it.hotspots) for it in data.iterations)}))
        else:
            typer.echo(f"wrote {target}")
