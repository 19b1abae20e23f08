"""The ``diziner`` command line.

Sub-commands live in :mod:`diziner.commands`; each module there defines
``register(app: typer.Typer) -> None``. Modules are discovered automatically, so a new
command is one new file. User errors (:class:`diziner.errors.DizinerError`) become one
line on stderr and exit code 2 — never a traceback.
"""
from __future__ import annotations

import importlib
import pkgutil
import sys

import typer

from diziner.errors import DizinerError

app = typer.Typer(
    name="diziner",
    help="Zero-shot NER by disagreement-guided instruction refinement (DiZiNER).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        from diziner import __version__

        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Zero-shot NER by disagreement-guided instruction refinement (DiZiNER)."""


def _register_commands() -> None:
    import diziner.commands as pkg

    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"diziner.commands.{info.name}")
        reg = getattr(mod, "register", None)
        if reg is not None:
            reg(app)


_register_commands()


def main(argv: list[str] | None = None) -> int:
    try:
        app(args=argv, standalone_mode=False)
        return 0
    except DizinerError as e:
        print(f"error: {e.one_line()}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except SystemExit as e:  # typer/click exits (e.g. --help)
        return int(e.code or 0)
    except Exception as e:  # click usage errors and the like (typer may vendor click)
        names = {c.__name__ for c in type(e).__mro__}
        if "UsageError" in names and "NoArgsIsHelpError" not in names:  # a bad option value: one line too
            print(f"error: {_usage_line(e)}", file=sys.stderr)
            return 2
        if "ClickException" in names:
            e.show()  # type: ignore[attr-defined]
            return int(getattr(e, "exit_code", 2) or 2)
        if "Abort" in names:
            return 1
        raise


def _usage_line(e: Exception) -> str:
    """Click's usage error (a bad option value, a missing argument) as one line, with the help to read."""
    words: list[str] = []
    ctx = getattr(e, "ctx", None)
    while ctx is not None and ctx.parent is not None:  # the sub-command path, whatever the program was called
        words.insert(0, ctx.info_name or "")
        ctx = ctx.parent
    message = " ".join(e.format_message().split())  # type: ignore[attr-defined]
    return f"{message} (hint: see 'diziner {' '.join(words + ['--help'])}')"


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
