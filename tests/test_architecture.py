"""Layering and import weight, checked on every test run."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_import_linter_contracts_are_kept():
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("import-linter is not installed")
    proc = subprocess.run([exe, "--config", str(ROOT / "pyproject.toml")], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


def test_core_import_is_light():
    code = ("import sys, diziner, diziner.cli, diziner.loop, diziner.analysis, diziner.annotate; "
            "print(','.join(m for m in ('llama_cpp','openai','anthropic','sklearn','matplotlib','spacy','statsmodels') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"heavy modules imported by the core: {out}"


def test_a_main_guard_is_the_last_statement_of_its_module():
    """``python -m diziner.X`` runs the guard as soon as it is reached: anything defined after it
    does not exist yet (a demo once failed at its last line with a NameError this way)."""
    import ast

    late = []
    for path in sorted((ROOT / "src" / "diziner").rglob("*.py")):
        body = ast.parse(path.read_text(encoding="utf-8")).body
        for i, node in enumerate(body):
            if (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
                    and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__"
                    and i != len(body) - 1):
                late.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert late == [], f"statements after the __main__ guard: {late}"
