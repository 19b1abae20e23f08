"""Progress bars on the terminal (rich), silent when quiet; shared by the loop and the engines."""
from __future__ import annotations

__all__ = ["Progress"]


class Progress:
    """Thin wrapper over rich progress bars; silent when ``quiet``."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self._p = None

    def __enter__(self):
        if not self.quiet:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as RP, TextColumn, TimeElapsedColumn

            self._p = RP(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), transient=False)
            self._p.__enter__()
        return self

    def __exit__(self, *exc):
        if self._p is not None:
            self._p.__exit__(*exc)

    def task(self, description: str, total: int):
        """A bar; returns ``advance(n=1, description=None)``."""
        if self._p is None:
            return lambda n=1, description=None: None
        tid = self._p.add_task(description, total=total)

        def advance(n: int = 1, description: str | None = None) -> None:
            self._p.update(tid, advance=n, **({"description": description} if description else {}))

        return advance

    def print(self, msg: str) -> None:
        if self._p is not None:
            self._p.console.print(msg)
        elif not self.quiet:
            print(msg)
