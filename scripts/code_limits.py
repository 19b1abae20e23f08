#!/usr/bin/env python
"""Functions of src/ over the limits of issue 15: more than 80 lines, or cyclomatic
complexity 20 or more (radon's measure).

Prints every function over a limit, longest / most complex first, and a one-line total.
With ``--check`` it exits 1 when any is over (the redesign's gate); without, it only
reports (what `make test` runs until the redesign lands).

    .venv/bin/python scripts/code_limits.py [--check] [--max-lines 80] [--max-complexity 19]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def over_limits(src: Path, max_lines: int, max_cc: int) -> list[tuple[str, int, int]]:
    from radon.complexity import cc_visit
    from radon.visitors import Function

    out = {}
    for path in sorted(src.rglob("*.py")):
        for block in cc_visit(path.read_text(encoding="utf-8")):
            for f in [block, *getattr(block, "methods", [])]:
                if not isinstance(f, Function):
                    continue  # a class: its methods are listed
                lines = f.endline - f.lineno + 1
                if lines > max_lines or f.complexity > max_cc:
                    owner = f"{f.classname}." if f.classname else ""
                    out[(str(path.relative_to(ROOT)), f.lineno)] = (f"{path.relative_to(ROOT)}:{f.lineno} {owner}{f.name}",
                                                                    lines, f.complexity)
    return sorted(out.values(), key=lambda x: (-x[2], -x[1]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 when a function is over a limit")
    ap.add_argument("--max-lines", type=int, default=80)
    ap.add_argument("--max-complexity", type=int, default=19)
    a = ap.parse_args(argv)
    rows = over_limits(ROOT / "src", a.max_lines, a.max_complexity)
    for name, lines, cc in rows:
        print(f"{cc:4d} complexity {lines:5d} lines  {name}")
    print(f"{len(rows)} function(s) over {a.max_lines} lines or complexity {a.max_complexity}")
    return 1 if a.check and rows else 0


if __name__ == "__main__":
    sys.exit(main())
