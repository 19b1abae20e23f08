"""The project's file I/O: atomic writes and the JSONL reader.

Writes go to a temp file in the same folder, are fsynced, given an ordinary file mode
(0644 under the usual umask) and renamed into place: a reader (or a run killed
mid-write) never sees a half-written file. The JSONL reader raises the project's one-line
input error with the line number.
"""
from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


def _default_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def write_bytes(path: str | Path, data: bytes, mode: int | None = None) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same folder, fsync, replace).

    The file gets ``mode``, by default that of an ordinary new file (0666 minus the umask,
    0644 usually) — not the 0600 of the temp file.
    """
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    except OSError as e:
        raise _cannot_write(p, e) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _default_mode() if mode is None else mode)
        os.replace(tmp, p)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(e, OSError):
            raise _cannot_write(p, e) from None
        raise
    return p


def file_in_the_way(path: Path) -> Path | None:
    """The nearest existing ancestor of ``path`` when it is a file (so ``path`` cannot be created), else None."""
    blocker = next((a for a in Path(path).parents if a.exists()), None)
    return blocker if blocker is not None and not blocker.is_dir() else None


def _cannot_write(path: Path, e: OSError) -> Exception:
    """The project's one-line error for a path that cannot be written (a folder, or under a file)."""
    from diziner.errors import InputError

    if path.is_dir():
        return InputError(path, None, "cannot write: is a folder, not a file")
    blocker = file_in_the_way(path)
    if blocker is not None:
        return InputError(path, None, f"cannot write: {blocker} is a file, not a folder")
    return InputError(path, None, f"cannot write: {e.strerror or e}")


def write_text(path: str | Path, text: str, mode: int | None = None) -> Path:
    """UTF-8 text, ``\n`` line ends as given (see :func:`write_bytes`)."""
    return write_bytes(path, text.encode("utf-8"), mode)


def write_json(path: str | Path, data: Any) -> Path:
    return write_text(path, json.dumps(data, ensure_ascii=False, indent=2, default=_default) + "\n")


def write_jsonl(path: str | Path, rows: Iterable[Any]) -> Path:
    return write_text(path, "".join(json.dumps(r, ensure_ascii=False, default=_default) + "\n" for r in rows))


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def iter_jsonl(path: str | Path, *, tolerate_torn_tail: bool = False,
               objects: bool = True) -> Iterator[tuple[int, Any]]:
    """(line number, record) of each non-blank line of a JSONL file, read line by line.

    A line that is not UTF-8 or not JSON (or, with ``objects``, not a JSON object) is the
    project's one-line :class:`~diziner.errors.InputError` naming the file and line; with
    ``tolerate_torn_tail`` a torn *last* line (a writer killed mid-line) is dropped instead.
    """
    from diziner.errors import InputError

    p = Path(path)
    try:
        fh = open(p, "rb")  # noqa: SIM115 (closed below; bytes, so a bad byte names its line)
    except OSError as e:
        raise InputError(p, None, f"cannot read: {e.strerror or e}") from None
    with fh:
        torn: tuple[int, str] | None = None  # a bad line, an error unless it is the last
        for n, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise InputError(p, n, f"not valid UTF-8 (byte {e.start} of the line)") from None
            if not line.strip():
                continue
            if torn is not None:
                raise InputError(p, torn[0], torn[1])
            try:
                obj = json.loads(line)
            except (ValueError, RecursionError) as e:
                msg = (f"invalid JSON: {e.msg} (column {e.colno})" if isinstance(e, json.JSONDecodeError)
                       else f"invalid JSON ({type(e).__name__})")
                if not tolerate_torn_tail:
                    raise InputError(p, n, msg) from None
                torn = (n, msg)
                continue
            if objects and not isinstance(obj, dict):
                raise InputError(p, n, "expected a JSON object on each line")
            yield n, obj


def read_jsonl(path: str | Path, *, tolerate_torn_tail: bool = False, objects: bool = True) -> list[Any]:
    """The records of a JSONL file (:func:`iter_jsonl`); blank lines are skipped."""
    return [obj for _, obj in iter_jsonl(path, tolerate_torn_tail=tolerate_torn_tail, objects=objects)]


def _default(o: Any) -> Any:
    if hasattr(o, "model_dump"):
        return o.model_dump(mode="json")
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, (set, frozenset)):
        return sorted(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
