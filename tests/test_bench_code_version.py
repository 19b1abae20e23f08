"""A bench result records the code that produced it: version, git commit, and whether tracked files were modified."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from diziner import __version__
from diziner.bench import code_version, markdown_row

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def git(cwd, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def test_outside_a_checkout_only_the_version_is_known(tmp_path):
    assert code_version(tmp_path) == {"version": __version__, "commit": None, "modified": None}


def test_a_checkout_gives_its_commit_and_whether_tracked_files_changed(tmp_path):
    git(tmp_path, "init", "-q")
    pkg = tmp_path / "src" / "pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("x = 1\n")
    git(tmp_path, "add", "src")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-q", "-m", "one")
    head = git(tmp_path, "rev-parse", "--short=7", "HEAD")
    assert code_version(pkg) == {"version": __version__, "commit": head, "modified": False}
    (tmp_path / "new.txt").write_text("untracked files do not count\n")
    assert code_version(pkg)["modified"] is False
    (pkg / "__init__.py").write_text("x = 2\n")
    assert code_version(pkg) == {"version": __version__, "commit": head, "modified": True}


def test_an_installed_copy_inside_another_projects_checkout_is_not_that_projects_commit(tmp_path):
    git(tmp_path, "init", "-q")
    (tmp_path / "README").write_text("a project\n")
    git(tmp_path, "add", "README")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-q", "-m", "one")
    installed = tmp_path / ".venv" / "site-packages" / "pkg"  # untracked (ignored, as a virtualenv is)
    installed.mkdir(parents=True)
    (installed / "__init__.py").write_text("x = 1\n")
    assert code_version(installed) == {"version": __version__, "commit": None, "modified": None}


def row(code: dict | None) -> str:
    r = {"dataset": "bc5cdr", "pool": [{"id": "a"}], "iteration0": {"a": 0.1}, "refined": {"a": 0.2},
         "test_size": 3, "consensus_diff_ci95": [0.0, 0.0], "consensus_iteration0": 0.1, "consensus_refined": 0.2,
         "union_iteration0": 0.1, "union_refined": 0.2, "agreement_by_iteration": {"0": 0.5},
         "selected_iteration": 0, "agreement_f1_pearson_r": None, "calls": 3, "cache_hits": 0, "wall_s": 1.0}
    if code is not None:
        r["code"] = code
    return markdown_row(r)


def test_the_table_row_names_the_commit():
    assert row({"version": "0.1.0", "commit": "abc1234", "modified": False}).startswith("| bc5cdr (abc1234) | 3 |")
    assert row({"version": "0.1.0", "commit": "abc1234", "modified": True}).startswith(
        "| bc5cdr (abc1234, modified) | 3 |")
    assert row({"version": "0.1.0", "commit": None, "modified": None}).startswith("| bc5cdr | 3 |")
    assert row(None).startswith("| bc5cdr | 3 |")  # results written before the field existed
