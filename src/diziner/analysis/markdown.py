"""The Markdown report of an analysis: for people and for the supervisor LLM."""
from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

from diziner.analysis.core import CATEGORIES, context
from diziner.analysis.error_types import ERROR_TYPES

if TYPE_CHECKING:
    from diziner.analysis.core import AnalysisResult

MAX_PATTERNS = 20
MD_PROFILE_EXAMPLES = 3

ERROR_TEXT = {
    "spurious": "spurious (consensus O → entity)",
    "missed": "missed (entity → O)",
    "type_confusion": "type confusion (label differs)",
    "boundary": "boundary (same label, other extent)",
}
CATEGORY_TEXT = {
    "elite_split": "elite split — the elite annotators disagree among themselves",
    "systematic_bias": "systematic bias — the elite and the rest read it differently",
    "both": "both",
    "minor": "minor",
}


def md(text: str) -> str:
    """Escape text for a Markdown table cell or inline text."""
    out = str(text).replace("\\", "\\\\")
    for ch in "|*_`[]<>":
        out = out.replace(ch, "\\" + ch)
    return " ".join(out.split())


def code(text: str) -> str:
    """Inline code span (no escaping inside; backticks become quotes)."""
    return "`" + " ".join(str(text).replace("`", "'").split()) + "`"


def _num(x: float | None, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _marked(result: AnalysisResult, h: dict) -> str:
    doc = result.documents[result.index.position[h["document"]]]
    s, e = h["window_char_start"], h["window_char_end"]
    plain = context(doc.text, s, e, mark=("\x00", "\x01"))
    return md(plain).replace("\x00", "**").replace("\x01", "**")


def _readings_line(h: dict) -> str:
    by_reading: dict[str, list[str]] = defaultdict(list)
    for ann, spans in h["readings"].items():
        key = "; ".join(f"{s['text']}/{s['label']}" for s in spans) or "O"
        by_reading[key].append(ann)
    return " · ".join(f"{code(r)} ({', '.join(md(a) for a in anns)})" for r, anns in by_reading.items())


def render_markdown(result: AnalysisResult) -> str:
    """Build the report text."""
    summ = result.summary
    lines: list[str] = ["# Disagreement analysis", ""]
    lines.append(
        f"{summ['n_documents']} documents, {summ['n_tokens']} tokens, {len(result.annotators)} annotators, "
        f"labels: {', '.join(md(lab) for lab in result.labels) or '(none)'}."
    )
    lines += _agreement(result)
    lines += _annotator_table(result)
    lines += _pairwise_table(result)
    lines += _hotspot_counts(result)
    lines += _patterns(result)
    lines += _profiles(result)
    return "\n".join(lines).rstrip() + "\n"


def _agreement(result: AnalysisResult) -> list[str]:
    ag = result.agreement
    lines = ["", "## Agreement", ""]
    lines.append(
        f"Mean pairwise strict span F1 **{_num(result.mean_agreement)}** · mean Cohen κ "
        f"{_num(ag['cohen_kappa']['mean'])} · Fleiss κ {_num(ag['fleiss_kappa'])} · "
        f"Krippendorff α {_num(ag['krippendorff_alpha'])} (token tags; – = undefined)."
    )
    missing = {n: ids for n, ids in result.unanswered.items() if ids}
    if missing:
        lines += ["", "Every figure uses only the documents each annotator (or pair) answered. Not answered "
                  "(failed calls, not \"no entities\"): "
                  + "; ".join(f"{md(n)} {len(ids)} ({', '.join(md(i) for i in ids[:5])}{', …' if len(ids) > 5 else ''})"
                              for n, ids in missing.items()) + "."]
    return lines


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def _annotator_table(result: AnalysisResult) -> list[str]:
    names = result.annotators
    lines = ["", f"Weights: {result.weights_mode}. Elite set: {', '.join(md(n) for n in result.elite)}.", ""]
    lines.append("| annotator | weight | elite | spans | mean F1 | mean κ |")
    lines.append("|---|---:|:---:|---:|---:|---:|")
    elite = set(result.elite)
    f1 = result.pairwise_f1
    kap = result.agreement["cohen_kappa"]["pairwise"]
    for n in names:
        others = [m for m in names if m != n]
        mf = _mean([f1[n][m] for m in others])
        mk = _mean([kap[n][m] for m in others if kap[n][m] is not None])
        lines.append(
            f"| {md(n)} | {result.weights[n]:.3f} | {'✓' if n in elite else ''} | "
            f"{result.profiles[n]['n_spans']} | {_num(mf)} | {_num(mk)} |"
        )
    return lines


def _pairwise_table(result: AnalysisResult) -> list[str]:
    names, f1 = result.annotators, result.pairwise_f1
    if len(names) <= 1:
        return []
    lines = ["", "Pairwise strict span F1:", ""]
    lines.append("| | " + " | ".join(md(n) for n in names) + " |")
    lines.append("|---|" + "---:|" * len(names))
    for a in names:
        lines.append(f"| {md(a)} | " + " | ".join(f"{f1[a][b]:.3f}" for b in names) + " |")
    return lines


def _hotspot_counts(result: AnalysisResult) -> list[str]:
    summ = result.summary
    lines = ["", "## Hotspots", ""]
    if not summ["n_hotspots"]:
        lines.append("No hotspots: every token has U* = 0 (all annotators agree everywhere).")
        return lines
    lines.append(
        f"{summ['n_hotspots']} hotspots over {summ['n_hot_tokens']} hot tokens "
        f"(H = max(U*, 2·D_type) ≥ {summ['hotspot_threshold']:.3f}, the {result.percentile:g}th percentile of H "
        "over tokens with U* > 0; doubling D_type ranks a label split like a boundary split of the same shares)."
    )
    lines += ["", "| category | hotspots |", "|---|---:|"]
    for c in CATEGORIES:
        lines.append(f"| {CATEGORY_TEXT[c]} | {summ['by_category'][c]} |")
    lines += ["", "| error type (vs the elite consensus) | readings | hotspots |", "|---|---:|---:|"]
    for t in ERROR_TYPES:
        lines.append(f"| {ERROR_TEXT[t]} | {summ['by_error_type'][t]} | {summ['hotspots_by_error_type'][t]} |")
    return lines


def _patterns(result: AnalysisResult) -> list[str]:
    groups: dict[tuple[str, str], list[tuple[dict, dict]]] = defaultdict(list)
    for h in result.hotspots:
        for e in h["errors"]:
            groups[(e["type"], e["labels"])].append((h, e))
    if not groups:
        return []
    n_ex = max(3, min(10, result.examples_per_pattern))
    lines = ["", "## Main patterns", ""]
    lines.append(
        "Hotspot readings grouped by error type × label(s), most frequent first. Each example shows the "
        "text around the hotspot (the disputed span in bold), the reading and who gave it, the elite "
        "consensus, and all readings."
    )
    ordered = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    for (etype, labs), items in ordered[:MAX_PATTERNS]:
        annotators: dict[str, int] = defaultdict(int)
        for _, e in items:
            for a in e["annotators"]:
                annotators[a] += 1
        who = ", ".join(f"{md(a)} {c}" for a, c in sorted(annotators.items(), key=lambda kv: -kv[1]))
        lines += ["", f"### {ERROR_TEXT[etype]}: {md(labs)} — {len(items)}", "", f"By annotator: {who}.", ""]
        for h, e in items[:n_ex]:
            lines.append(
                f"- {_marked(result, h)} — reading {code(e['reading'])} by {', '.join(md(a) for a in e['annotators'])}"
                f"; elite consensus {code(e['consensus'])}; {md(h['category'])}. All: {_readings_line(h)}"
            )
    if len(ordered) > MAX_PATTERNS:
        lines += ["", f"({len(ordered) - MAX_PATTERNS} smaller patterns not shown; see analysis.json.)"]
    return lines


def _profiles(result: AnalysisResult) -> list[str]:
    lines = ["", "## Annotator profiles", ""]
    lines.append("Each annotator's spans against the weighted consensus of all annotators, on the documents it answered.")
    lines += ["", "| annotator | spans | matched | spurious | missed | type confusion | boundary |"]
    lines.append("|---|---:|---:|---:|---:|---:|---:|")
    for n, p in result.profiles.items():
        lines.append(
            f"| {md(n)} | {p['n_spans']} | {p['matched']} | {p['spurious']} | {p['missed']} | "
            f"{p['type_confusion']} | {p['boundary']} |"
        )
    for n, p in result.profiles.items():
        shown = [(t, p["examples"][t]) for t in ERROR_TYPES if p["examples"][t]]
        if not shown:
            continue
        lines += ["", f"### {md(n)}", ""]
        for t, exs in shown:
            lines.append(f"- {ERROR_TEXT[t]} ({p[t]}):")
            for ex in exs[:MD_PROFILE_EXAMPLES]:
                said = "O" if ex["label"] == "O" else f"{ex['text']}/{ex['label']}"
                lines.append(f"  - {md(ex['context'])} — said {code(said)}, consensus {code(ex['consensus'])}")
    return lines
