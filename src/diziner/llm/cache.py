"""Persistent response cache (SQLite, WAL) shared by processes.

The key is the sha256 of the canonical JSON of what determines an answer: the backend,
the model, the adapter's mode (endpoint, structured-output mode; plain vs reproducible
evaluation for local models) and the request's messages or prompt, params and JSON
schema. The base URL is *not* in the key: the same
model answers the same way wherever it is served (and a test server's port changes).
Ledger tags (purpose, annotator, iteration) are not in the key either.

Only successful answers are stored. ``read=False`` (the ``--no-cache`` flag) skips
lookups but still stores fresh answers, so a refreshed run leaves a warm cache behind.
API keys never reach the cache: neither key nor value contains them.
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from diziner.llm.base import LLMRequest, LLMResponse

KEY_VERSION = 1


def default_cache_dir() -> Path:
    env = os.environ.get("DIZINER_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "diziner"


def default_cache_path() -> Path:
    return default_cache_dir() / "llm-cache.sqlite"


def _normalise_slow(obj: Any) -> Any:
    """The reference walk (any types); :func:`_normalise` must agree with it."""
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, float):
        return int(obj) if obj.is_integer() and abs(obj) < 2**53 else obj
    if isinstance(obj, int):
        return obj
    if isinstance(obj, dict):
        return {str(k): _normalise_slow(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_normalise_slow(v) for v in obj]
    return str(obj)


def _normalise(obj: Any) -> Any:
    """Make equal requests serialise equally (1.0 == 1, tuples == lists).

    Exact built-in types take a fast path (this runs on every call's messages); anything
    else (subclasses, other objects) goes through :func:`_normalise_slow`, same result.
    """
    t = type(obj)
    if t is str or t is int or t is bool or obj is None:
        return obj
    if t is dict:
        return {k if type(k) is str else str(k): _normalise(v) for k, v in obj.items()}
    if t is list or t is tuple:
        return [_normalise(v) for v in obj]
    return _normalise_slow(obj)


def canonical_json(obj: Any) -> str:
    return json.dumps(_normalise(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def cache_key(identity: dict[str, Any], request: LLMRequest) -> str:
    """sha256 hex of (key version, adapter identity, request payload)."""
    payload = {"v": KEY_VERSION, "id": identity, "req": request.cache_payload()}
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()


_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    backend TEXT NOT NULL,
    model TEXT NOT NULL,
    text TEXT NOT NULL,
    tokens_in INTEGER NOT NULL,
    tokens_out INTEGER NOT NULL,
    finish_reason TEXT,
    latency_s REAL NOT NULL,
    created REAL NOT NULL
)
"""


class LLMCache:
    """A thread-safe handle on the SQLite cache file (open one per process)."""

    def __init__(self, path: str | Path | None = None, *, read: bool = True, write: bool = True,
                 busy_timeout_s: float = 60.0):
        self.path = Path(path) if path is not None else default_cache_path()
        self.read = read
        self.write = write
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(str(self.path), timeout=busy_timeout_s, isolation_level=None,
                                         check_same_thread=False)
            self._conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
            self._retry_locked(lambda: self._conn.execute("PRAGMA journal_mode=WAL"))
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._retry_locked(lambda: self._conn.execute(_SCHEMA))
        except (OSError, sqlite3.DatabaseError) as e:  # e.g. --cache names a text file or a folder
            from diziner.errors import InputError

            if getattr(self, "_conn", None) is not None:
                self._conn.close()
            raise InputError(self.path, None, f"cannot open as a response cache (an SQLite file): {e}",
                             hint="name a new file or an earlier cache with --cache") from None

    def _retry_locked(self, fn, attempts: int = 50):
        # Creating the DB / switching to WAL can race with another process even with busy_timeout.
        for i in range(attempts):
            try:
                return fn()
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) and "busy" not in str(e) or i == attempts - 1:
                    raise
                time.sleep(0.05 * (i + 1))

    def get(self, key: str) -> LLMResponse | None:
        if not self.read:
            return None
        with self._lock:
            row = self._retry_locked(lambda: self._conn.execute(
                "SELECT backend, model, text, tokens_in, tokens_out, finish_reason FROM responses WHERE key=?",
                (key,)).fetchone())
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        backend, model, text, tin, tout, finish = row
        return LLMResponse(text=text, tokens_in=tin, tokens_out=tout, cached=True, cost_usd=0.0,
                           model=model, backend=backend, finish_reason=finish)

    def put(self, key: str, resp: LLMResponse) -> None:
        if not self.write:
            return
        with self._lock:
            self._retry_locked(lambda: self._conn.execute(
                "INSERT OR REPLACE INTO responses VALUES (?,?,?,?,?,?,?,?,?)",
                (key, resp.backend, resp.model, resp.text, resp.tokens_in, resp.tokens_out,
                 resp.finish_reason, resp.latency_s, time.time())))

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            try:
                self._conn.close()
            except sqlite3.Error:
                pass

    def __enter__(self) -> "LLMCache":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["LLMCache", "cache_key", "canonical_json", "default_cache_path", "default_cache_dir"]
