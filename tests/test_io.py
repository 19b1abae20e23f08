"""The one I/O module: atomic writes with an ordinary file mode, the JSONL reader's one-line errors."""
from __future__ import annotations

import os
import stat

import pytest

from diziner import atomic
from diziner.errors import InputError


@pytest.fixture
def umask022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(p) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


def test_atomic_writes_leave_ordinary_files_and_no_temp(tmp_path, umask022):
    a = atomic.write_text(tmp_path / "sub" / "a.txt", "héllo\n")
    b = atomic.write_json(tmp_path / "b.json", {"x": [1, 2]})
    c = atomic.write_jsonl(tmp_path / "c.jsonl", [{"i": 1}, {"i": 2}])
    d = atomic.write_bytes(tmp_path / "d.bin", b"\x00\x01", mode=0o600)
    assert [_mode(p) for p in (a, b, c)] == [0o644] * 3 and _mode(d) == 0o600
    assert a.read_text(encoding="utf-8") == "héllo\n" and atomic.read_jsonl(c) == [{"i": 1}, {"i": 2}]
    assert sorted(p.name for p in tmp_path.rglob("*.tmp")) == []


def test_export_and_report_write_through_it(tmp_path, umask022):
    from diziner.export import formats

    formats._atomic_text(tmp_path / "e.json", "[]")
    assert _mode(tmp_path / "e.json") == 0o644


@pytest.mark.parametrize("body,line,problem", [
    ('{"a": 1}\n\nnot json\n', 3, "invalid JSON"),
    ('{"a": 1}\n[1, 2]\n', 2, "expected a JSON object"),
])
def test_read_jsonl_names_the_file_and_line(tmp_path, body, line, problem):
    p = tmp_path / "x.jsonl"
    p.write_text(body)
    with pytest.raises(InputError) as e:
        atomic.read_jsonl(p)
    msg = e.value.one_line()
    assert str(p) in msg and f":{line}:" in msg and problem in msg


def test_read_jsonl_torn_tail_and_bad_bytes(tmp_path):
    p = tmp_path / "t.jsonl"
    p.write_text('{"a": 1}\n{"a": 2}\n{"a": ')
    assert atomic.read_jsonl(p, tolerate_torn_tail=True) == [{"a": 1}, {"a": 2}]
    with pytest.raises(InputError, match=":3:"):
        atomic.read_jsonl(p)
    q = tmp_path / "b.jsonl"
    q.write_bytes(b'{"a": "\xff"}\n')
    with pytest.raises(InputError, match="not valid UTF-8"):
        atomic.read_jsonl(q)
    assert atomic.read_jsonl(p.parent / "t.jsonl", tolerate_torn_tail=True, objects=False)[0] == {"a": 1}
