"""Read a refine run directory or a ``diziner analyze`` folder into plain report data.

Everything here is I/O and light reshaping; nothing is rendered. Bad files raise
:class:`~diziner.errors.InputError` naming the file, the line and the problem. Optional
files that are missing are simply absent from the report (and listed in ``notes``).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diziner.analysis.records import Hotspot, hotspots_of
from diziner.errors import InputError

__all__ = [
    "IterationData",
    "ReportData",
    "hotspot_anchor",
    "ledger_table",
    "link_rules_to_hotspots",
    "load_report_data",
    "read_json",
    "read_jsonl",
    "rule_anchor",
]


# --------------------------------------------------------------------------- file readers

def read_json(path: Path) -> Any:
    """Parse a JSON file; errors name the file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise InputError(path, None, f"not valid UTF-8 (byte {e.start})") from None
    except OSError as e:
        raise InputError(path, None, f"cannot read: {e.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(path, e.lineno, f"invalid JSON: {e.msg} (column {e.colno})") from None


def read_jsonl(path: Path, *, tolerate_torn_tail: bool = False) -> list[dict[str, Any]]:
    """Parse a JSONL file of objects (:func:`diziner.atomic.read_jsonl`)."""
    from diziner.atomic import read_jsonl as read

    return read(path, tolerate_torn_tail=tolerate_torn_tail)


def _expect(value: Any, kind: type | tuple[type, ...], path: Path, where: str) -> Any:
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        names = {"dict": "an object", "list": "a list"}.get(names, names)
        raise InputError(path, None, f"{where}: expected {names}, got {type(value).__name__}")
    return value


# --------------------------------------------------------------------------- model

@dataclass
class IterationData:
    """What the report shows of one iteration (``t`` is None for a lone analysis folder)."""

    t: int | None
    analysis: dict[str, Any] | None = None
    analysis_path: Path | None = None
    guideline: Any = None  # diziner.guideline.Guideline
    guideline_yaml: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)  # document id -> text (from sample.jsonl)
    supervisor: dict[str, Any] = field(default_factory=dict)  # file stem -> parsed JSON

    @property
    def label(self) -> str:
        return "analysis" if self.t is None else f"iteration {self.t}"

    @property
    def key(self) -> str:
        return "a" if self.t is None else str(self.t)

    _hotspot_records: list[Hotspot] | None = field(default=None, repr=False)

    @property
    def hotspots(self) -> list[dict[str, Any]]:
        """The hotspots as analysis.json holds them."""
        return list((self.analysis or {}).get("hotspots") or [])

    @property
    def hotspot_records(self) -> list[Hotspot]:
        """The hotspots as typed records (parsed once)."""
        if self._hotspot_records is None:
            self._hotspot_records = hotspots_of(self.analysis)
        return self._hotspot_records


@dataclass
class ReportData:
    kind: str  # "run" | "analysis"
    root: Path
    iterations: list[IterationData]
    metrics: dict[str, Any] = field(default_factory=dict)
    ledger: list[dict[str, Any]] = field(default_factory=list)
    run_info: dict[str, Any] = field(default_factory=dict)
    final_guideline: Any = None
    notes: list[str] = field(default_factory=list)

    @property
    def selected_iteration(self) -> int | None:
        sel = self.metrics.get("selected_iteration")
        return sel if isinstance(sel, int) else None


# --------------------------------------------------------------------------- loading

_ANALYSIS_LISTS = ("annotators", "elite", "documents", "hotspots")
_ANALYSIS_DICTS = ("weights", "pairwise_f1", "agreement", "profiles", "summary")


def _check_analysis(data: Any, path: Path) -> dict[str, Any]:
    _expect(data, dict, path, "analysis")
    for k in _ANALYSIS_LISTS:
        if k in data and data[k] is not None:
            _expect(data[k], list, path, k)
    for k in _ANALYSIS_DICTS:
        if k in data and data[k] is not None:
            _expect(data[k], dict, path, k)
    for i, h in enumerate(data.get("hotspots") or []):
        _expect(h, dict, path, f"hotspots[{i}]")
        for k in ("readings",):
            if k in h and h[k] is not None:
                _expect(h[k], dict, path, f"hotspots[{i}].{k}")
                for ann, spans in h[k].items():
                    _expect(spans, list, path, f"hotspots[{i}].readings.{ann}")
        for k in ("consensus", "errors"):
            if k in h and h[k] is not None:
                _expect(h[k], list, path, f"hotspots[{i}].{k}")
    for i, d in enumerate(data.get("documents") or []):
        _expect(d, dict, path, f"documents[{i}]")
    try:
        hotspots_of(data)
    except InputError as e:
        raise InputError(path, None, e.problem) from None
    return data


def _load_guideline(path: Path) -> tuple[Any, str]:
    from diziner.guideline import load_guideline

    return load_guideline(path), path.read_text(encoding="utf-8")


def _load_iteration(d: Path, t: int, notes: list[str]) -> IterationData:
    it = IterationData(t=t)
    a = d / "analysis.json"
    if a.is_file():
        it.analysis = _check_analysis(read_json(a), a)
        it.analysis_path = a
    g = d / "guideline.yaml"
    if g.is_file():
        it.guideline, it.guideline_yaml = _load_guideline(g)
    m = d / "metrics.json"
    if m.is_file():
        it.metrics = _expect(read_json(m), dict, m, "metrics")
    s = d / "sample.jsonl"
    if s.is_file():
        for row in read_jsonl(s):
            if isinstance(row.get("id"), (str, int)) and isinstance(row.get("text"), str):
                it.texts[str(row["id"])] = row["text"]
    sup = d / "supervisor"
    if sup.is_dir():
        for f in sorted(sup.glob("*.json")):
            it.supervisor[f.stem] = read_json(f)
    if it.analysis is None:
        notes.append(f"iteration {t}: no analysis.json")
    return it


def load_report_data(path: str | Path) -> ReportData:
    """Load a refine run directory, a ``diziner analyze`` folder, or an analysis.json file."""
    p = Path(path)
    if p.is_file() and p.suffix == ".json":
        return _load_analysis_folder(p.parent, p)
    if not p.is_dir():
        raise InputError(p, None, "not a directory (expected a refine run directory or an analyze folder)")
    iters_dir = p / "iterations"
    if iters_dir.is_dir() or (p / "ledger.jsonl").is_file() or (p / "final").is_dir():
        return _load_run(p)
    if (p / "analysis.json").is_file():
        return _load_analysis_folder(p, p / "analysis.json")
    raise InputError(p, None, "neither a refine run directory (iterations/) nor an analyze folder (analysis.json)")


def _load_analysis_folder(root: Path, apath: Path) -> ReportData:
    it = IterationData(t=None, analysis=_check_analysis(read_json(apath), apath), analysis_path=apath)
    return ReportData(kind="analysis", root=root, iterations=[it])


def _load_run(root: Path) -> ReportData:
    notes: list[str] = []
    iterations: list[IterationData] = []
    idir = root / "iterations"
    if idir.is_dir():
        nums = sorted(int(c.name) for c in idir.iterdir() if c.is_dir() and c.name.isdigit())
        iterations = [_load_iteration(idir / str(t), t, notes) for t in nums]
    data = ReportData(kind="run", root=root, iterations=iterations, notes=notes)
    m = root / "metrics.json"
    if m.is_file():
        data.metrics = _expect(read_json(m), dict, m, "metrics")
        its = data.metrics.get("iterations")
        if its is not None:
            _expect(its, list, m, "iterations")
            for i, row in enumerate(its):
                _expect(row, dict, m, f"iterations[{i}]")
    led = root / "ledger.jsonl"
    if led.is_file():
        data.ledger = read_jsonl(led, tolerate_torn_tail=True)
    rj = root / "run.json"
    if rj.is_file():
        info = read_json(rj)
        data.run_info = info if isinstance(info, dict) else {}
    fg = root / "final" / "guideline.yaml"
    if fg.is_file():
        data.final_guideline, _ = _load_guideline(fg)
    if not iterations:
        notes.append("no iterations/ found")
    return data


# --------------------------------------------------------------------------- derived tables

def metrics_rows(data: ReportData) -> list[dict[str, Any]]:
    """Per-iteration metric rows: run metrics.json first, else each iteration's metrics/analysis."""
    rows = [r for r in data.metrics.get("iterations") or [] if isinstance(r, dict)]
    if rows:
        return rows
    out = []
    for it in data.iterations:
        row: dict[str, Any] = dict(it.metrics)
        a = it.analysis or {}
        row.setdefault("iteration", it.t)
        if "mean_pairwise_f1" not in row and "mean_pairwise_f1" in a:
            row["mean_pairwise_f1"] = a["mean_pairwise_f1"]
        if "per_annotator_agreement" not in row and a.get("pairwise_f1"):
            row["per_annotator_agreement"] = per_annotator_agreement(a)
        row.setdefault("weights", a.get("weights") or {})
        row.setdefault("elite", a.get("elite") or [])
        if "hotspots_by_category" not in row and it.analysis is not None:
            row["hotspots_by_category"] = hotspot_categories(it.hotspot_records)
            row.setdefault("hotspots", len(it.hotspot_records))
        out.append(row)
    return out


def per_annotator_agreement(analysis: dict[str, Any]) -> dict[str, float]:
    """Mean strict-span F1 of each annotator with the others, from ``pairwise_f1``."""
    pf = analysis.get("pairwise_f1") or {}
    names = list(analysis.get("annotators") or pf.keys())
    out: dict[str, float] = {}
    for a in names:
        vals = [_num(pf.get(a, {}).get(b)) for b in names if b != a]
        vals = [v for v in vals if v is not None]
        if vals:
            out[a] = sum(vals) / len(vals)
    return out


def hotspot_categories(hotspots: list[Hotspot]) -> dict[str, int]:
    out: dict[str, int] = {}
    for h in hotspots:
        c = h.category or "uncategorised"
        out[c] = out.get(c, 0) + 1
    return out


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None


def ledger_table(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Usage sums by (annotator, iteration), by annotator, by purpose and in total.

    A successful call whose ``cost_usd`` is null (and that was not a cache hit) has an unknown cost:
    sums add the known costs and count the unknown ones, so unknown never reads as $0.
    """
    def empty() -> dict[str, Any]:
        return {"calls": 0, "ok": 0, "failed": 0, "cached": 0, "tokens_in": 0, "tokens_out": 0,
                "latency_s": 0.0, "cost_usd": 0.0, "unknown_cost_calls": 0, "known_cost_calls": 0}

    def add(acc: dict[str, Any], r: dict[str, Any]) -> None:
        acc["calls"] += 1
        ok = r.get("ok", True) is not False
        acc["ok" if ok else "failed"] += 1
        cached = bool(r.get("cached"))
        acc["cached"] += int(cached)
        acc["tokens_in"] += int(_num(r.get("tokens_in")) or 0)
        acc["tokens_out"] += int(_num(r.get("tokens_out")) or 0)
        acc["latency_s"] += _num(r.get("latency_s")) or 0.0
        cost = _num(r.get("cost_usd"))
        if cost is None:
            if ok and not cached:  # a failed call's cost is not counted (as in diziner.llm.ledger)
                acc["unknown_cost_calls"] += 1
        else:
            acc["cost_usd"] += cost
            acc["known_cost_calls"] += 1

    cells: dict[tuple[str, str], dict[str, Any]] = {}
    by_ann: dict[str, dict[str, Any]] = {}
    by_purpose: dict[str, dict[str, Any]] = {}
    total = empty()
    for r in records:
        ann = str(r.get("annotator") or "-")
        purpose = str(r.get("purpose") or "-")
        if ann == "-" and purpose.startswith("supervise"):
            ann = "(supervisor)"
        t = r.get("iteration")
        tk = "-" if t is None else str(t)
        for acc in (cells.setdefault((ann, tk), empty()), by_ann.setdefault(ann, empty()),
                    by_purpose.setdefault(purpose, empty()), total):
            add(acc, r)

    def sort_key(k: tuple[str, str]) -> tuple[str, int, str]:
        return (k[0], int(k[1]) if k[1].isdigit() else 10**9, k[1])

    return {
        "rows": [{"annotator": a, "iteration": t, **cells[(a, t)]} for a, t in sorted(cells, key=sort_key)],
        "by_annotator": [{"annotator": a, **v} for a, v in sorted(by_ann.items())],
        "by_purpose": [{"purpose": p, **v} for p, v in sorted(by_purpose.items())],
        "total": total,
    }


# --------------------------------------------------------------------------- anchors and links

_SAFE = re.compile(r"[^A-Za-z0-9_-]+")


def _slug(s: str) -> str:
    return _SAFE.sub("_", s).strip("_") or "x"


def hotspot_anchor(iteration_key: str, index: int) -> str:
    return f"hs-{iteration_key}-{index}"


def rule_anchor(iteration_key: str, scope: str, rule_id: str) -> str:
    return f"rule-{iteration_key}-{_slug(scope)}-{_slug(rule_id)}"


_HS_REF = re.compile(r"^\s*(?:#|h|hs|hotspot)[\s_#:-]*(\d+)\s*$", re.IGNORECASE)


def _hotspot_refs_in(obj: Any, n: int) -> set[int]:
    """Hotspot indices named by a supervisor pattern record (ints, 'H3', '#3', 'hotspot 3')."""
    out: set[int] = set()
    keys = ("hotspots", "hotspot_ids", "hotspot", "evidence", "examples", "instances")
    if not isinstance(obj, dict):
        return out
    for k in keys:
        v = obj.get(k)
        vals = v if isinstance(v, list) else [v]
        for x in vals:
            if isinstance(x, bool):
                continue
            if isinstance(x, int) and 0 <= x < n:
                out.add(x)
            elif isinstance(x, str):
                m = _HS_REF.match(x)
                if m and int(m.group(1)) < n:
                    out.add(int(m.group(1)))
            elif isinstance(x, dict):
                idx = x.get("index", x.get("hotspot"))
                if isinstance(idx, int) and not isinstance(idx, bool) and 0 <= idx < n:
                    out.add(idx)
    return out


def _pattern_records(obj: Any) -> list[dict[str, Any]]:
    """Every JSON object with an ``id`` inside the supervisor outputs."""
    found: list[dict[str, Any]] = []
    stack = [obj]
    while stack:
        x = stack.pop()
        if isinstance(x, dict):
            if isinstance(x.get("id"), (str, int)):
                found.append(x)
            stack.extend(x.values())
        elif isinstance(x, list):
            stack.extend(x)
    return found


def resolve_pattern(pattern: str, it: IterationData) -> list[int]:
    """Hotspot indices of iteration ``it`` that a provenance pattern refers to.

    A pattern can name a hotspot directly ("H3", "#3", "hotspot 3", or the hotspot's own
    ``id``), name a pattern record of that iteration's supervisor output whose
    ``hotspots``/``evidence``/``examples`` list hotspot indices, or name a hotspot
    category ("boundary", "type", ...), which links every hotspot of that category.
    """
    hs = it.hotspot_records
    n = len(hs)
    p = str(pattern).strip()
    m = _HS_REF.match(p)
    if m and int(m.group(1)) < n:
        return [int(m.group(1))]
    direct = [i for i, h in enumerate(hs) if h.id is not None and str(h.id) == p]
    if direct:
        return direct
    for rec in _pattern_records(list(it.supervisor.values())):
        if str(rec.get("id")) == p:
            refs = _hotspot_refs_in(rec, n)
            if refs:
                return sorted(refs)
    low = p.lower()
    by_cat = [i for i, h in enumerate(hs) if h.category.lower() == low]
    return by_cat


def link_rules_to_hotspots(data: ReportData) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    """For each rule (iteration key, scope, rule id): the hotspots that motivated it.

    The guideline of iteration t was written from the analysis of iteration t-1, so a
    rule added in iteration t links to hotspots of iteration t-1 (falling back to the
    latest earlier iteration that has an analysis).
    Returns ``{(iteration_key, scope, rule_id): [{"pattern", "anchor", "iteration", "index"}...]}``
    where a pattern that resolves to nothing has ``anchor`` None.
    """
    by_t = {it.t: it for it in data.iterations if it.t is not None}
    out: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for it in data.iterations:
        g = it.guideline
        if g is None:
            continue
        scopes: list[tuple[str, list[Any]]] = [("common", g.all_common())]
        for ann in g.model_specific:
            scopes.append((ann, g.for_annotator(ann)))
        for scope, rules in scopes:
            for r in rules:
                prov = r.provenance
                if not prov.patterns:
                    continue
                src_t = None
                for cand in range(prov.added_in - 1, -1, -1):
                    if cand in by_t and by_t[cand].analysis is not None:
                        src_t = cand
                        break
                links = []
                for pat in prov.patterns:
                    idxs = resolve_pattern(pat, by_t[src_t]) if src_t is not None else []
                    if idxs:
                        for i in idxs:
                            links.append({"pattern": pat, "iteration": src_t, "index": i,
                                          "anchor": hotspot_anchor(str(src_t), i)})
                    else:
                        links.append({"pattern": pat, "iteration": src_t, "index": None, "anchor": None})
                out[(it.key, scope, r.id)] = links
    return out
