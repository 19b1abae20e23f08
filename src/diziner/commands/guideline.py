"""`diziner guideline show|diff`: read a guideline YAML, render it, compare two."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

guideline_app = typer.Typer(
    name="guideline",
    help="Show a guideline (text or Markdown) or compare two guidelines.\n\nExample: diziner guideline diff it0.yaml it1.yaml",
    no_args_is_help=True,
)


def _summary(g) -> str:
    lines = [f"guideline {g.schema_.name}, iteration {g.iteration}",
             f"labels: {', '.join(g.schema_.label_names)}",
             f"goal: {' '.join(g.goal.split()) or '(none)'}"]
    common = g.all_common()
    lines.append(f"common instructions: {len(common)}")
    for ins in common:
        lines.append(f"  {ins.id}. {' '.join(ins.text.split())} [{len(ins.examples)} examples]")
    for ann in sorted(g.model_specific):
        items = g.for_annotator(ann)
        lines.append(f"model-specific instructions for {ann}: {len(items)}")
        for ins in items:
            lines.append(f"  {ins.id}. {' '.join(ins.text.split())} [{len(ins.examples)} examples]")
    lines.append(f"change log entries: {len(g.changelog)}")
    return "\n".join(lines)


@guideline_app.command("show")
def show(
    path: Annotated[Path, typer.Argument(help="Guideline YAML file.")],
    markdown: Annotated[bool, typer.Option("--markdown", help="Print the full guideline as Markdown for people.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the guideline as JSON.")] = False,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write the output to this file instead of stdout.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing (only check that the file is valid).")] = False,
) -> None:
    """Show a guideline: a summary, the Markdown rendering, or JSON.

    Example: diziner guideline show run/final/guideline.yaml --markdown -o guideline.md
    """
    from diziner.errors import InputError
    from diziner.guideline import load_guideline
    from diziner.guideline_render import render_markdown

    g = load_guideline(path)
    if json_out:
        text = json.dumps(g.model_dump(by_alias=True, mode="json"), ensure_ascii=False, indent=2) + "\n"
    elif markdown:
        text = render_markdown(g)
    else:
        text = _summary(g) + "\n"
    if out is not None:
        if out.resolve() == path.resolve():
            raise InputError(out, None, "refusing to overwrite the input guideline")
        from diziner.corpus.writers import atomic_write_text

        atomic_write_text(out, text)
        return
    if not quiet:
        typer.echo(text, nl=False)


@guideline_app.command("diff")
def diff(
    a: Annotated[Path, typer.Argument(help="The earlier guideline YAML.")],
    b: Annotated[Path, typer.Argument(help="The later guideline YAML.")],
    json_out: Annotated[bool, typer.Option("--json", help="Print the differences as JSON.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only a one-line summary.")] = False,
) -> None:
    """Compare two guidelines: goal, common and model-specific instructions, change ratio.

    Example: diziner guideline diff run/iterations/0/guideline.yaml run/iterations/1/guideline.yaml --json
    """
    from diziner.guideline import load_guideline
    from diziner.guideline_render import diff_guidelines

    ga, gb = load_guideline(a), load_guideline(b)
    d = diff_guidelines(ga, gb, name_a=str(a), name_b=str(b))
    if json_out:
        typer.echo(json.dumps(d.to_dict(), ensure_ascii=False, indent=2))
    elif quiet:
        typer.echo(d.summary())
    else:
        typer.echo(d.to_text(), nl=False)


def register(app: typer.Typer) -> None:
    app.add_typer(guideline_app, name="guideline")
