"""`diziner init DIR`: scaffolding, refusal to overwrite, --force, output modes."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from diziner.cli import main
from diziner.commands.init import FILES, STARTER_POOL, scaffold
from diziner.errors import DizinerError
from diziner.schema import load_schema

NAMES = [name for name, _ in FILES]


def test_init_creates_the_three_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "proj" / "sub"  # parents are created
    assert main(["init", str(d)]) == 0
    out = capsys.readouterr().out
    assert sorted(p.name for p in d.iterdir()) == sorted(NAMES)  # no temp files left behind
    assert "Next steps" in out and "diziner refine" in out and str(d / "pool.yaml") in out


def test_starter_schema_loads(tmp_path: Path) -> None:
    scaffold(tmp_path)
    s = load_schema(tmp_path / "schema.yaml")
    assert s.label_names == ["PER", "ORG", "LOC"]
    assert s.demonstrations and s.goal


def test_starter_texts_are_nonempty_lines(tmp_path: Path) -> None:
    scaffold(tmp_path)
    lines = (tmp_path / "texts.txt").read_text(encoding="utf-8").splitlines()
    assert 3 <= len(lines) <= 10
    assert all(line.strip() == line and line for line in lines)


def test_starter_pool_is_the_embedded_pool(tmp_path: Path) -> None:
    scaffold(tmp_path)
    data = yaml.safe_load((tmp_path / "pool.yaml").read_text(encoding="utf-8"))
    assert [a["model"] for a in data["annotators"]] == ["gemma-3-270m", "smollm2-135m"]
    assert {a["backend"] for a in data["annotators"]} == {"local"}
    assert {a["prompt_style"] for a in data["annotators"]} == {"fewshot", "chat"}
    assert data["supervisor"] == {"backend": "consensus"}


def _commented_blocks(text: str) -> dict[str, str]:
    """The commented-out annotator blocks of the starter pool, uncommented, by heading."""
    blocks: dict[str, list[str]] = {}
    cur: str | None = None
    for line in text.splitlines():
        m = re.match(r"\s*# --- (\w+)", line)
        if m:
            cur = m.group(1)
            blocks[cur] = []
        elif cur and re.match(r"\s*# ", line) and line.strip() != "#":
            blocks[cur].append(line.replace("# ", "", 1))
        elif not line.strip() or not line.strip().startswith("#"):
            cur = None
    return {k: "\n".join(v) for k, v in blocks.items()}


def test_commented_pool_examples_are_valid_when_uncommented() -> None:
    blocks = _commented_blocks(STARTER_POOL)
    assert set(blocks) == {"vLLM", "Ollama", "OpenAI", "Anthropic"}
    backends = {}
    for name, body in blocks.items():
        entries = yaml.safe_load(body)
        assert isinstance(entries, list) and len(entries) == 1, name
        backends[name] = entries[0]["backend"]
        assert entries[0]["id"] and entries[0]["model"]
    assert backends == {"vLLM": "openai", "Ollama": "openai", "OpenAI": "openai", "Anthropic": "anthropic"}


def test_starter_pool_validates_with_every_commented_annotator(tmp_path: Path) -> None:
    pytest.importorskip("diziner.llm.factory")
    from diziner.llm.pool import load_pool

    scaffold(tmp_path)
    assert load_pool(tmp_path / "pool.yaml").ids == ["gemma", "smollm2"]
    extra = "\n".join(_commented_blocks(STARTER_POOL).values())
    data = yaml.safe_load(STARTER_POOL)
    data["annotators"] += yaml.safe_load(extra)
    p = tmp_path / "full-pool.yaml"
    p.write_text(yaml.safe_dump(data), encoding="utf-8")
    assert load_pool(p).ids == ["gemma", "smollm2", "qwen", "llama", "gpt", "claude"]


def test_init_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "texts.txt").write_text("my own documents\n", encoding="utf-8")
    assert main(["init", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert "texts.txt" in err and "--force" in err and "Traceback" not in err
    # nothing was written, the user's file is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["texts.txt"]
    assert (tmp_path / "texts.txt").read_text(encoding="utf-8") == "my own documents\n"


def test_init_force_overwrites(tmp_path: Path) -> None:
    (tmp_path / "schema.yaml").write_text("broken: [\n", encoding="utf-8")
    assert main(["init", str(tmp_path), "--force", "--quiet"]) == 0
    assert load_schema(tmp_path / "schema.yaml").label_names == ["PER", "ORG", "LOC"]


def test_init_on_a_file_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "afile"
    f.write_text("x", encoding="utf-8")
    assert main(["init", str(f)]) == 2
    err = capsys.readouterr().err
    assert "not a folder" in err and err.count("\n") == 1
    with pytest.raises(DizinerError):
        scaffold(f)


def test_init_json_and_quiet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", str(tmp_path / "a"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [Path(p).name for p in data["created"]] == NAMES
    assert any("refine" in s for s in data["next_steps"])
    assert main(["init", str(tmp_path / "b"), "--quiet"]) == 0
    assert capsys.readouterr().out == ""
    assert (tmp_path / "b" / "pool.yaml").is_file()


def test_init_help_has_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", "--help"]) == 0
    assert "Example: diziner init" in capsys.readouterr().out


@settings(max_examples=25, deadline=None)
@given(existing=st.sets(st.sampled_from(NAMES)), force=st.booleans())
def test_init_is_all_or_nothing(tmp_path_factory: pytest.TempPathFactory, existing: set[str], force: bool) -> None:
    """Without --force any existing starter file stops init before anything is written;
    with --force (or when none exists) all three files end up with the starter content."""
    d = tmp_path_factory.mktemp("proj")
    for name in existing:
        (d / name).write_text("user content\n", encoding="utf-8")
    if existing and not force:
        with pytest.raises(DizinerError, match="already exist"):
            scaffold(d, force=force)
        assert sorted(p.name for p in d.iterdir()) == sorted(existing)
        assert all((d / n).read_text(encoding="utf-8") == "user content\n" for n in existing)
    else:
        scaffold(d, force=force)
        assert {n: (d / n).read_text(encoding="utf-8") for n in NAMES} == dict(FILES)
