"""Scripted answers for reliability tests (see docs/reliability.md); the kill points
(:func:`maybe_kill`) live in :mod:`diziner.faultpoints` and are re-exported here.

The responders make a :class:`~diziner.testing.server.TestServer` behave like a pool of
different models: :func:`annotator_responder` tags capitalised words of the fenced
document (what and how depends on the request's model name, so annotators disagree);
:func:`title_word_responder` is a simpler two-annotator version for streaming and scale
runs; :func:`supervisor_responder` returns valid outputs for the four LLM supervisor phases.
"""
from __future__ import annotations

import hashlib
import json
import re
import zlib
from collections.abc import Callable
from typing import Any

from diziner.faultpoints import KILL_ENV, KILL_POINTS, maybe_kill  # noqa: F401  (re-exported for tests)


# ----------------------------------------------------------------------------- scripted answers

BEGIN = "<<<DOCUMENT>>>"
END = "<<<END OF DOCUMENT>>>"
_CAP = re.compile(r"[A-Z][\w'-]*(?:\s+[A-Z][\w'-]*)*")
_WORD = re.compile(r"\w+", re.UNICODE)
_OTHER = re.compile(r"[\u4e00-\u9fff\u3040-\u30ff]{2,}|[\u0590-\u05ff]{2,}|[\u0600-\u06ff]{2,}")  # CJK, Hebrew, Arabic


def fenced_document(body: dict[str, Any]) -> str | None:
    """The document of an annotation request: the text between the fence markers of the last user turn."""
    msgs = body.get("messages") or []
    users = [m.get("content", "") for m in msgs if m.get("role") == "user"]
    text = users[-1] if users else str(body.get("prompt", ""))
    if BEGIN not in text or END not in text:
        return None
    inner = text[text.rindex(BEGIN) + len(BEGIN): text.rindex(END)]
    return inner.removeprefix("\n").removesuffix("\n")


def naive_document(body: dict[str, Any]) -> str | None:
    """The sentence of a plain k-shot chat request (:mod:`diziner.annotate.naive`): its last user turn."""
    msgs = body.get("messages") or []
    if not msgs or not str(msgs[0].get("content", "")).startswith("Named entities. Labels:"):
        return None
    users = [m.get("content", "") for m in msgs if m.get("role") == "user"]
    return users[-1] if users else None


def _h(*parts: str) -> int:
    return int(hashlib.sha256("\0".join(parts).encode()).hexdigest()[:8], 16)


def annotator_mentions(document: str, model: str, labels: list[str], *, p_ungrounded: float = 0.0) -> list[dict]:
    """Deterministic, model-dependent mentions grounded in ``document``.

    Capitalised word runs and runs of CJK, Hebrew or Arabic letters are candidates (for
    other text: every third word). A model
    skips some of them, splits some multi-word runs, and labels by a hash that depends on
    the model for a minority of candidates — enough for real, partial disagreement.
    With probability ``p_ungrounded`` (by hash of document + model) one mention not in the
    text is added.
    """
    found = [(m.start(), m.group(0)) for m in _CAP.finditer(document)]
    found += [(m.start(), m.group(0)) for m in _OTHER.finditer(document)]
    cands = [c for _, c in sorted(found)]
    if not cands:
        cands = [m.group(0) for i, m in enumerate(_WORD.finditer(document)) if i % 3 == 0][:8]
    out = []
    for i, c in enumerate(cands[:400]):
        h = _h(model, c, str(i))
        if h % 7 == 0:
            continue  # missed
        if " " in c and h % 5 == 0:
            c = c.split()[-1]  # boundary disagreement
        base = labels[_h(c) % len(labels)]
        label = labels[h % len(labels)] if h % 4 == 0 else base
        out.append({"text": c, "label": label})
    if p_ungrounded > 0 and (_h("ungrounded", model, document) % 10_000) / 10_000 < p_ungrounded:
        out.append({"text": "Zyxqvort Unmentioned Holdings", "label": labels[0]})
    return out


def annotator_responder(labels: list[str], *, p_ungrounded: float = 0.0,
                        supervisor: Callable[[dict], str] | None = None) -> Callable[[dict], str]:
    """A TestServer responder for annotation requests (and, optionally, supervisor ones)."""

    def respond(body: dict) -> str:
        doc = fenced_document(body)
        if doc is None:
            doc = naive_document(body)
        if doc is None:
            if supervisor is not None:
                return supervisor(body)
            return json.dumps({"mentions": []})
        return json.dumps({"mentions": annotator_mentions(doc, str(body.get("model", "")), labels,
                                                          p_ungrounded=p_ungrounded)}, ensure_ascii=False)

    return respond


_TITLE_WORD = re.compile(r"\b[A-Z][a-z]+\b")


def title_word_responder(body: dict) -> str:
    """Two cheap, deterministic annotators: every model tags each distinct title-case word of the
    fenced document PER (odd length) or ORG (even); model ``m-b`` skips about one word in five
    and calls about one in three LOC, so the two disagree now and then."""
    out = []
    for w in sorted(set(_TITLE_WORD.findall(fenced_document(body) or ""))):
        h = zlib.crc32(w.encode())
        label = "PER" if len(w) % 2 else "ORG"
        if body.get("model") == "m-b":
            if h % 5 == 0:
                continue
            if h % 3 == 0:
                label = "LOC"
        out.append({"text": w, "label": label})
    return json.dumps({"mentions": out})


def _schema_name(body: dict) -> str:
    rf = body.get("response_format") or {}
    js = rf.get("json_schema") or {}
    return str(js.get("name") or (js.get("schema") or {}).get("title") or rf.get("schema", {}).get("title") or "")


def supervisor_responder(body: dict) -> str:
    """Valid outputs of the four LLM supervisor phases (chosen by the JSON schema's name)."""
    name = _schema_name(body)
    text = json.dumps(body.get("messages") or [])
    tag = _h(text) % 1000
    if name == "Phase1Output":
        return json.dumps({"patterns": [{"id": "P1", "description": "boundary of multi-word names", "root_cause":
                                         "unclear span rule", "competing_readings": ["full name", "last word"],
                                         "hotspots": [0], "support": 1}]})
    if name == "Phase2Output":
        return json.dumps({"diagnoses": []})
    if name == "Phase3Output":
        return json.dumps({"common": [{"id": None, "text": f"Tag the whole multi-word name, not its last word ({tag}).",
                                       "examples": [], "patterns": ["P1"]}],
                           "model_specific": [], "goal": {"update_goal": False, "goal": "", "reason": ""}})
    if name == "Phase4Output":
        # echo the proposed new instruction text back as the new hierarchy
        m = re.search(r"Tag the whole multi-word name, not its last word \(\d+\)\.", text)
        new = m.group(0) if m else "Tag the whole multi-word name."
        return json.dumps({"common": [{"id": "1", "text": new, "examples": [], "children": []}]})
    return json.dumps({"mentions": []})


__all__ = [
    "KILL_ENV",
    "KILL_POINTS",
    "annotator_mentions",
    "annotator_responder",
    "fenced_document",
    "maybe_kill",
    "server_pool",
    "supervisor_responder",
    "synthetic_documents",
]


# ----------------------------------------------------------------------------- pools and corpora for tests

def server_pool(base_url: str, models: list[str], *, key_env: str, timeout_s: float = 1.0, max_retries: int = 6,
                structured: list[str] | None = None, supervisor_model: str | None = None,
                max_concurrency: int = 32) -> dict[str, Any]:
    """A pool mapping (for ``pool_from_dict`` or a YAML file): one openai annotator per model at ``base_url``.

    ``structured``: per-annotator ``structured_output`` (default ``json_schema``). With
    ``supervisor_model`` the supervisor is an LLM at the same server, else ``consensus``.
    """
    modes = structured or ["json_schema"] * len(models)
    common = {"backend": "openai", "base_url": base_url, "api_key_env": key_env, "timeout_s": timeout_s,
              "max_retries": max_retries, "max_concurrency": max_concurrency}
    pool: dict[str, Any] = {"annotators": [dict(common, id=f"ann{i}", model=m, structured_output=modes[i])
                                           for i, m in enumerate(models)],
                            "global_concurrency": max_concurrency}
    if supervisor_model:
        pool["supervisor"] = dict(common, model=supervisor_model)
    return pool


_FIRST = ["Ada", "Grace", "Linus", "Mei", "Olu", "Priya", "Sven", "Yara", "Jonas", "Keiko"]
_LAST = ["Lovelace", "Hopper", "Torvalds", "Chen", "Adeyemi", "Raman", "Berg", "Haddad", "Weber", "Tanaka"]
_ORGS = ["Nordlicht Systems", "Acme Corp", "Globex", "Initech", "Umbrella Labs", "Stark Industries", "Wayne Tech"]
_PLACES = ["Berlin", "Lagos", "Osaka", "Lima", "Oslo", "Austin", "Pune"]
_VERBS = ["joined", "left", "sued", "advised", "acquired", "praised", "visited"]


def synthetic_documents(n: int, *, seed: int = 0, prefix: str = "d") -> list[dict[str, str]]:
    """``n`` short news-like documents ``{"id","text"}`` (distinct texts; deterministic)."""
    rows = []
    for i in range(n):
        h = _h(str(seed), str(i))
        who = f"{_FIRST[h % 10]} {_LAST[(h >> 4) % 10]}"
        org = _ORGS[(h >> 8) % len(_ORGS)]
        place = _PLACES[(h >> 12) % len(_PLACES)]
        verb = _VERBS[(h >> 16) % len(_VERBS)]
        rows.append({"id": f"{prefix}{i:04d}",
                     "text": f"{who} {verb} {org} in {place} on day {i}, the company said."})
    return rows
