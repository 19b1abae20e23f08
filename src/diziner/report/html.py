"""Build the self-contained HTML report of a refine run or a ``diziner analyze`` folder.

One file, no network: CSS, SVG charts, data (JSON in ``<script type="application/json">``
with ``<``, ``>`` and ``&`` escaped as ``\\u003c``...) and a little JS are inline; a
Content-Security-Policy meta tag forbids any external load. All text from documents,
models and run files is escaped by Jinja2 autoescaping or by :mod:`.fragments`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from markupsafe import Markup

from diziner import atomic
from diziner.analysis.records import Hotspot, SpanRecord
from diziner.errors import InputError
from diziner.report import charts
from diziner.report.data import (
    IterationData,
    ReportData,
    hotspot_anchor,
    hotspot_categories,
    ledger_table,
    link_rules_to_hotspots,
    load_report_data,
    metrics_rows,
    per_annotator_agreement,
    rule_anchor,
)
from diziner.report.fragments import (
    fmt_cost,
    fmt_num,
    guideline_diff,
    highlight,
    span_chips,
    window,
    yaml_diff,
)
from diziner.report.template import CSS, GENERATOR, JS, TEMPLATE

__all__ = ["build_report", "is_our_report", "json_for_script", "render_report"]


def json_for_script(obj: Any) -> Markup:
    """JSON safe to place inside ``<script type="application/json">`` (no ``</``, ``<!--``, ``&``)."""
    text = json.dumps(obj, ensure_ascii=False, sort_keys=True)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return Markup(text)


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None


# --------------------------------------------------------------------------- sections

def _charts(data: ReportData, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    its = [r for r in rows if isinstance(r.get("iteration"), int)]
    last = next((it for it in reversed(data.iterations) if it.analysis), None)
    made = (_agreement_chart(its), _annotators_chart(last), _hotspots_chart(rows, last), _f1_chart(its))
    return [c for c in made if c is not None]


def _series(its: list[dict[str, Any]], key: str, value: Any = lambda v: v) -> dict[str, list[tuple[float, float]]]:
    """name -> [(iteration, value)] from the ``key`` mapping of each metrics row (numbers only)."""
    out: dict[str, list[tuple[float, float]]] = {}
    for r in its:
        for k, v in (r.get(key) or {}).items():
            val = value(v)
            if _num(val) is not None:
                out.setdefault(str(k), []).append((r["iteration"], float(val)))
    return out


def _agreement_chart(its: list[dict[str, Any]]) -> dict[str, Any] | None:
    if len(its) < 2:
        return None
    series = _series(its, "per_annotator_agreement")
    mp = [(r["iteration"], float(r["mean_pairwise_f1"])) for r in its if _num(r.get("mean_pairwise_f1")) is not None]
    if mp:
        series["mean pairwise F1"] = mp
    if not series:
        return None
    return {"id": "chart-agreement", "caption": "Mean strict-span F1 of each annotator with the others, per iteration.",
            "svg": Markup(charts.line_chart(series, "Agreement per annotator", "F1", dashed={"mean pairwise F1"}))}


def _annotators_chart(last: IterationData | None) -> dict[str, Any] | None:
    if last is None:
        return None
    a = last.analysis or {}
    names = [str(n) for n in a.get("annotators") or list((a.get("weights") or {}).keys())]
    agr = per_annotator_agreement(a)
    w = {str(k): float(v) for k, v in (a.get("weights") or {}).items() if _num(v) is not None}
    if not names or not (agr or w):
        return None
    return {"id": "chart-annotators", "caption": f"Agreement with the others and weight of each annotator ({last.label}).",
            "svg": Markup(charts.grouped_bars(names, {"agreement (F1)": agr, "weight": w}, f"Annotators ({last.label})"))}


def _hotspots_chart(rows: list[dict[str, Any]], last: IterationData | None) -> dict[str, Any] | None:
    groups = []
    for r in rows:
        cats = r.get("hotspots_by_category")
        if isinstance(cats, dict):
            name = str(r.get("iteration")) if r.get("iteration") is not None else "analysis"
            groups.append((name, {str(k): int(v) for k, v in cats.items() if isinstance(v, int)}))
    if not groups and last is not None:
        groups = [(last.label, hotspot_categories(last.hotspot_records))]
    if not groups:
        return None
    return {"id": "chart-hotspots", "caption": "Number of hotspots by category.",
            "svg": Markup(charts.stacked_bars(groups, "Hotspots by category"))}


def _f1_chart(its: list[dict[str, Any]]) -> dict[str, Any] | None:
    f1 = _series(its, "f1", lambda v: v.get("f1") if isinstance(v, dict) else v)
    if not f1:
        return None
    return {"id": "chart-f1", "caption": "Strict span F1 against the gold annotation (gold was given).",
            "svg": Markup(charts.line_chart(f1, "F1 vs gold", "F1", dashed={"consensus"}))}


def _heatmaps(data: ReportData) -> list[dict[str, Any]]:
    out = []
    for it in data.iterations:
        a = it.analysis or {}
        pf = a.get("pairwise_f1") or {}
        names = [str(n) for n in a.get("annotators") or list(pf)]
        if not names or not pf:
            continue
        m = [[_num((pf.get(x) or {}).get(y)) if x != y else 1.0 for y in names] for x in names]
        agr = [(k, fmt_num(_num(v))) for k, v in (a.get("agreement") or {}).items() if not isinstance(v, (dict, list))]
        elite = set(map(str, a.get("elite") or []))
        weights = [(n, fmt_num(_num((a.get("weights") or {}).get(n))), n in elite) for n in names]
        out.append({"key": it.key, "label": it.label,
                    "svg": Markup(charts.heatmap(names, m, f"Pairwise strict span F1 ({it.label})")),
                    "agreement": agr, "weights": weights})
    return out


def _doc_text(it: IterationData, doc_id: str) -> str | None:
    t = it.texts.get(doc_id)
    if t is not None:
        return t
    for d in (it.analysis or {}).get("documents") or []:
        if str(d.get("id")) == doc_id and isinstance(d.get("text"), str):
            return d["text"]
    return None


def _rule_backlinks(rule_links: dict[tuple[str, str, str], list[dict[str, Any]]]) -> dict[str, list[dict[str, str]]]:
    """hotspot anchor -> the rules that cite it (anchor and label)."""
    back: dict[str, list[dict[str, str]]] = {}
    for (ikey, scope, rid), links in rule_links.items():
        for link in links:
            if link["anchor"]:
                label = f"rule {rid}" if scope == "common" else f"{scope} rule {rid}"
                label += f" (iteration {ikey})"
                back.setdefault(link["anchor"], []).append({"anchor": rule_anchor(ikey, scope, rid), "label": label})
    return back


def _hotspot_cards(data: ReportData, rule_links: dict[tuple[str, str, str], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    back = _rule_backlinks(rule_links)
    return [_hotspot_card(it, i, h, back) for it in data.iterations for i, h in enumerate(it.hotspot_records)]


def _hotspot_card(it: IterationData, i: int, h: Hotspot, back: dict[str, list[dict[str, str]]]) -> dict[str, Any]:
    doc = h.document
    hot = (h.char_start, h.char_end) if h.char_start is not None and h.char_end is not None else None
    text = _doc_text(it, doc)
    card: dict[str, Any] = {
        "anchor": hotspot_anchor(it.key, i), "index": h.id if h.id is not None else i, "iter_key": it.key,
        "iter_label": it.label, "category": h.category or "uncategorised", "document": doc,
        "tokens": f"{h.token_start}–{h.token_end}" if h.token_start is not None else "",
        "mean_u_star": fmt_num(h.mean_u_star) if h.mean_u_star is not None else None,
        "elite_agree": h.elite_agree,
        "has_text": text is not None and hot is not None,
        "rules": back.get(hotspot_anchor(it.key, i), []),
        "errors": [{"type": e.type, "reading": e.reading, "consensus": e.consensus,
                    "annotators": ", ".join(e.annotators)} for e in h.errors],
    }
    if text is not None and hot is not None:
        card.update(_in_document(h, text, hot))
    else:
        card.update(_in_context(h))
    return card


def _json(spans: list[SpanRecord] | None) -> list[dict[str, Any]] | None:
    """Spans as the JSON the fragments draw (None stays None: no consensus recorded)."""
    return None if spans is None else [s.to_json() for s in spans]


def _in_document(h: Hotspot, text: str, hot: tuple[int, int]) -> dict[str, Any]:
    """Context, readings and consensus of a hotspot drawn on its document's text."""
    readings = {a: _json(v) or [] for a, v in h.readings.items()}
    consensus = _json(h.consensus)
    all_sp = [s for v in h.readings.values() for s in v] + list(h.consensus or [])
    lo = min([hot[0]] + [s.start for s in all_sp])
    hi = max([hot[1]] + [s.end for s in all_sp])
    lo, hi = max(0, lo), min(len(text), hi)
    clo, chi = window(text, lo, hi, 100)
    rlo, rhi = window(text, lo, hi, 25)
    return {"context": highlight(text, [], clo, chi, hot=hot),
            "readings": [(str(k), highlight(text, list(v), rlo, rhi, hot=hot)) for k, v in readings.items()],
            "consensus": highlight(text, list(consensus), rlo, rhi, hot=hot) if consensus is not None else None}


def _in_context(h: Hotspot) -> dict[str, Any]:
    """The same without the document: the hotspot's own context, readings as chips."""
    readings = {a: _json(v) or [] for a, v in h.readings.items()}
    consensus = _json(h.consensus)
    ctx = h.context or h.text
    htext = h.text
    k = ctx.find(htext) if htext else -1
    return {"context": highlight(ctx, [], hot=(k, k + len(htext))) if k >= 0 else highlight(ctx, []),
            "readings": [(str(a), span_chips(list(v))) for a, v in readings.items()],
            "consensus": span_chips(list(consensus)) if consensus is not None else None}


def _rules_view(g: Any, ikey: str, scope: str, rules: list[Any], links: dict, depth: int = 0) -> list[dict[str, Any]]:
    out = []
    for r in rules:
        ls = links.get((ikey, scope, r.id), [])
        out.append({
            "anchor": rule_anchor(ikey, scope, r.id), "id": r.id, "text": r.text, "depth": depth,
            "examples": [{"text": ex.text, "rationale": ex.rationale,
                          "mentions": "; ".join(f"{m.text} = {m.label}" for m in ex.mentions) or "no mention"}
                         for ex in r.examples],
            "added_in": r.provenance.added_in, "source": r.provenance.source,
            "changed_in": ", ".join(map(str, r.provenance.changed_in)),
            "links": [{"anchor": link["anchor"],
                       "text": (f"{link['pattern']} → hotspot #{link['index']} (iteration {link['iteration']})"
                                if link["anchor"] else str(link["pattern"]))} for link in ls],
        })
        out += _rules_view(g, ikey, scope, r.children, links, depth + 1)
    return out


def _external_diff(prev: IterationData, cur: IterationData) -> tuple[str, str] | None:
    """Summary line and readable text of ``diziner.guideline_render.diff_guidelines`` (when available)."""
    try:
        from diziner.guideline_render import diff_guidelines
    except Exception:
        return None
    try:
        d = diff_guidelines(prev.guideline, cur.guideline, name_a=prev.label, name_b=cur.label)
        return str(d.summary()), str(d.to_text())
    except Exception:  # a diff we cannot compute must not stop the report; ours is still shown
        return None


def _guidelines(data: ReportData, links: dict) -> tuple[list[dict[str, Any]], Any]:
    out = []
    prev: IterationData | None = None
    schema = None
    sel = data.selected_iteration
    with_g = [it for it in data.iterations if it.guideline is not None]
    for it in with_g:
        g = it.guideline
        schema = schema or g.schema_
        scopes = [{"title": "Common instructions C", "rules": _rules_view(g, it.key, "common", g.common, links)}]
        for ann, rules in g.model_specific.items():
            scopes.append({"title": f"Model-specific instructions R for {ann}",
                           "rules": _rules_view(g, it.key, ann, rules, links)})
        diff = None
        ydiff = Markup("")
        ext = None
        if prev is not None:
            diff = guideline_diff(prev.guideline, g)
            ext = _external_diff(prev, it)
            ydiff = yaml_diff(prev.guideline_yaml, it.guideline_yaml, f"iteration {prev.t}", f"iteration {it.t}")
        n_rules = len(g.all_common()) + sum(len(g.for_annotator(a)) for a in g.model_specific)
        out.append({"key": it.key, "label": it.label, "goal": g.goal, "scopes": scopes, "diff": diff,
                    "yaml_diff": ydiff, "diff_summary": ext[0] if ext else None,
                    "diff_text": ext[1] if ext else None, "n_rules": n_rules, "selected": it.t == sel and sel is not None,
                    "open": (it.t == sel) if sel is not None else it is with_g[-1]})
        prev = it
    return out, schema


def _ledger(data: ReportData) -> dict[str, Any] | None:
    if not data.ledger:
        return None
    tab = ledger_table(data.ledger)

    def view(acc: dict[str, Any]) -> dict[str, Any]:
        v = dict(acc)
        v.update({k: fmt_num(acc[k]) for k in ("calls", "failed", "cached", "tokens_in", "tokens_out")})
        v["latency"] = f"{acc['latency_s']:.1f}"
        v["cost"] = fmt_cost(acc)
        return v

    return {"rows": [view(r) for r in tab["rows"]], "by_annotator": [view(r) for r in tab["by_annotator"]],
            "by_purpose": [view(r) for r in tab["by_purpose"]], "total": view(tab["total"])}


def _f1_of(row: dict[str, Any]) -> str:
    f1 = row.get("f1") or {}
    v = f1.get("consensus") if isinstance(f1, dict) else None
    v = v.get("f1") if isinstance(v, dict) else v
    return fmt_num(_num(v))


# --------------------------------------------------------------------------- render / write

CORPUS_LIMIT = 2000  # documents shown in the corpus browser (the rest are counted, not drawn)


def _corpus(data: ReportData) -> dict[str, Any] | None:
    """The delivered corpus (final/annotations.jsonl) for the browser: each document with its
    spans coloured by support, the filter attributes, and every annotator's reading."""
    from diziner.report.data import read_jsonl

    final = data.root / "final" / "annotations.jsonl"
    if data.kind != "run" or not final.is_file():
        return None
    rows = read_jsonl(final, tolerate_torn_tail=True)
    readings: dict[str, dict[str, list]] = {}
    for f in sorted((data.root / "final" / "by_annotator").glob("*.jsonl")):
        readings[f.stem] = {str(r.get("id")): (r.get("spans") if r.get("status", "ok") == "ok" else None)
                            for r in read_jsonl(f, tolerate_torn_tail=True)}
    docs = [_corpus_doc(r, readings) for r in rows[:CORPUS_LIMIT]]
    labels = sorted({str(s.get("label")) for r in rows[:CORPUS_LIMIT] for s in r.get("spans") or []
                     if isinstance(s, dict)})
    return {"docs": docs, "labels": labels, "total": len(rows), "shown": len(docs)}


def _corpus_doc(r: dict[str, Any], readings: dict[str, dict[str, list]]) -> dict[str, Any]:
    from diziner.report.fragments import support_marks

    text, spans = str(r.get("text", "")), [s for s in r.get("spans") or [] if isinstance(s, dict)]
    weights = [s["support"]["weight"] for s in spans if isinstance(s.get("support"), dict)
               and isinstance(s["support"].get("weight"), (int, float))]
    reads = []
    for a, by in readings.items():
        sp = by.get(str(r.get("id")))
        reads.append((a, highlight(text, sp) if sp is not None else Markup('<span class="none">failed</span>')))
    return {"id": str(r.get("id")), "html": support_marks(text, spans),
            "labels": " ".join(sorted({str(s.get("label")) for s in spans})),
            "hot": int(any(s.get("hotspot") for s in spans)), "n": len(spans),
            "min_support": f"{min(weights):.4f}" if weights else "1", "readings": reads,
            "failed": ", ".join(str(x.get("annotator")) for x in r.get("failed") or [] if isinstance(x, dict))}


def _run_facts(data: ReportData, sel: int | None) -> list[tuple[str, str]]:
    """The headline of a run: the selected iteration's pilot analysis and the delivered corpus
    (``final/analysis.json``), never the last iteration's when that one was rejected."""
    facts: list[tuple[str, str]] = []
    chosen = next((it for it in data.iterations if it.t == sel and it.analysis), None)
    if chosen is not None:
        a = chosen.analysis or {}
        if _num(a.get("mean_pairwise_f1")) is not None:
            facts.append(("pilot agreement (selected iteration)", fmt_num(_num(a.get("mean_pairwise_f1")))))
        facts.append(("elite set (selected iteration)", ", ".join(map(str, a.get("elite") or []))))
        facts.append(("pilot documents (selected iteration)", str(len(a.get("documents") or []))))
    final = data.root / "final" / "analysis.json"
    if final.is_file():
        from diziner.report.data import read_json

        f = read_json(final)
        if isinstance(f, dict):
            facts.append(("delivered corpus: documents", str(len(f.get("documents") or []))))
            if _num(f.get("mean_pairwise_f1")) is not None:
                facts.append(("delivered corpus: mean pairwise F1", fmt_num(_num(f.get("mean_pairwise_f1")))))
            facts.append(("delivered corpus: hotspots", str(len(f.get("hotspots") or []))))
    agg = ((data.run_info.get("options") or {}).get("final_aggregation")
           if isinstance(data.run_info.get("options"), dict) else None)
    if agg:
        facts.append(("delivered aggregation", str(agg)))
    final_f1 = data.metrics.get("final_f1") if isinstance(data.metrics.get("final_f1"), dict) else {}
    if _num(final_f1.get("consensus")) is not None:
        facts.append(("delivered F1 vs gold", fmt_num(_num(final_f1.get("consensus")))))
    return facts


def _metric_rows(data: ReportData, rows: list[dict[str, Any]], sel: int | None) -> list[dict[str, Any]]:
    if data.kind != "run":
        return []
    return [{"iteration": r.get("iteration"), "mpf1": fmt_num(_num(r.get("mean_pairwise_f1"))),
             "hotspots": fmt_num(r.get("hotspots") if isinstance(r.get("hotspots"), int)
                                 else sum((r.get("hotspots_by_category") or {}).values()) or None),
             "elite": ", ".join(map(str, r.get("elite") or [])), "f1": _f1_of(r),
             "selected": sel is not None and r.get("iteration") == sel}
            for r in rows]


def _facts(data: ReportData, sel: int | None, last: IterationData | None) -> list[tuple[str, str]]:
    """The headline: a run's iterations, pool and :func:`_run_facts`; an analysis' last figures."""
    facts: list[tuple[str, str]] = []
    if data.kind == "run":
        facts.append(("iterations", str(len(data.iterations))))
        if sel is not None:
            facts.append(("selected iteration", str(sel)))
        pool = data.run_info.get("pool")
        if isinstance(pool, list):
            facts.append(("annotators", ", ".join(
                f"{p.get('id')} ({p.get('backend', '?')}: {p.get('model', '?')})" for p in pool if isinstance(p, dict))))
        return facts + _run_facts(data, sel)
    if last is not None:
        a = last.analysis or {}
        facts.append(("annotators", ", ".join(map(str, a.get("annotators") or []))))
        facts.append(("elite set", ", ".join(map(str, a.get("elite") or []))))
        if _num(a.get("mean_pairwise_f1")) is not None:
            facts.append(("mean pairwise F1", fmt_num(_num(a.get("mean_pairwise_f1")))))
        facts.append(("documents", str(len(a.get("documents") or []))))
        facts.append(("hotspots", str(len(last.hotspots))))
    return facts


def render_report(data: ReportData) -> str:
    """The report HTML for loaded run or analysis data."""
    import jinja2

    rows = metrics_rows(data)
    links = link_rules_to_hotspots(data)
    sel = data.selected_iteration
    guidelines, schema = _guidelines(data, links)
    hotspots = _hotspot_cards(data, links)
    last = next((it for it in reversed(data.iterations) if it.analysis), None)
    page_data = {
        "kind": data.kind,
        "default_iteration": (str(sel) if sel is not None and any(it.t == sel and it.analysis for it in data.iterations)
                              else (last.key if last is not None else None)),
        "iterations": [{"key": it.key, "label": it.label, "categories": hotspot_categories(it.hotspot_records)}
                       for it in data.iterations if it.analysis is not None],
        "hotspots": len(hotspots),
    }
    title = f"diziner report — {data.root.resolve().name}"
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    tpl = env.from_string(TEMPLATE)
    return tpl.render(
        generator=GENERATOR, title=title,
        subtitle="refine run" if data.kind == "run" else "disagreement analysis",
        root=str(data.root), kind_label="refine run directory" if data.kind == "run" else "analyze folder",
        facts=_facts(data, sel, last), metric_rows=_metric_rows(data, rows, sel), has_f1=any(r.get("f1") for r in rows),
        notes=data.notes, charts=_charts(data, rows), heatmaps=_heatmaps(data), hotspots=hotspots,
        corpus=_corpus(data), guidelines=guidelines, schema=schema, ledger=_ledger(data),
        css=Markup(CSS), js=Markup(JS), data_json=json_for_script(page_data),
    )


def is_our_report(path: Path) -> bool:
    """True when ``path`` is an HTML report written by diziner (its generator meta tag)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096).decode("utf-8", "replace")
    except OSError:
        return False
    return f'<meta name="generator" content="{GENERATOR}">' in head


def build_report(path: str | Path, out: str | Path | None = None, force: bool = False) -> Path:
    """Write the HTML report of a run directory / analyze folder; returns the output path.

    Default output: ``<DIR>/report.html``. An existing file is replaced only when it is
    a diziner report (or with ``force``); input files of the run are never replaced.
    """
    data = load_report_data(path)
    target = Path(out) if out is not None else data.root / "report.html"
    if target.is_dir():
        raise InputError(target, None, "output path is a directory")
    if target.exists() and not force and not is_our_report(target):
        raise InputError(target, None, "exists and is not a diziner report; not overwriting",
                         hint="choose another --out or pass --force")
    protected = {p.resolve() for p in _input_files(data)}
    if target.resolve() in protected:
        raise InputError(target, None, "is an input file of the report; refusing to overwrite it")
    html = render_report(data)
    atomic.write_text(target, html)
    return target


def _input_files(data: ReportData) -> list[Path]:
    out = [p for p in (data.root / "metrics.json", data.root / "ledger.jsonl", data.root / "run.json") if p.exists()]
    for it in data.iterations:
        if it.analysis_path is not None:
            out.append(it.analysis_path)
    if data.kind == "run":
        out += [p for p in data.root.rglob("*") if p.is_file() and p.suffix in (".json", ".jsonl", ".yaml", ".md")]
    return out
