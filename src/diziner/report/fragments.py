"""HTML fragments built in Python: highlighted text, word diffs, guideline trees.

Every string that comes from a document, a model or a run file goes through
:func:`html.escape` here; the result is wrapped in :class:`markupsafe.Markup` so the
autoescaping template inserts it as is.
"""
from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from html import escape
from typing import Any

from markupsafe import Markup
import itertools

__all__ = ["fmt_cost", "fmt_num", "guideline_diff", "highlight", "span_chips", "window", "word_diff", "yaml_diff"]


def _e(s: Any) -> str:
    return escape(str(s), quote=True)


def fmt_num(x: Any, digits: int = 3) -> str:
    if isinstance(x, bool) or x is None:
        return "–"
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def fmt_cost(acc: dict[str, Any]) -> str:
    """Cost of a ledger group: known sum, 'unknown', or known sum + unknown part."""
    unknown = int(acc.get("unknown_cost_calls") or 0)
    total = float(acc.get("cost_usd") or 0.0)
    if unknown == 0:
        return f"${total:.4f}"
    if total == 0.0:  # nothing billed is known (cache hits cost 0): the cost is unknown, not $0
        return f"unknown ({unknown} call{'s' if unknown != 1 else ''})"
    return f"${total:.4f} + unknown ({unknown} call{'s' if unknown != 1 else ''})"


def window(text: str, lo: int, hi: int, pad: int = 80) -> tuple[int, int]:
    """A window around [lo, hi) widened by ``pad`` characters, cut at spaces."""
    a = max(0, lo - pad)
    b = min(len(text), hi + pad)
    if a > 0:
        sp = text.find(" ", a, lo)
        a = sp + 1 if sp != -1 else a
    if b < len(text):
        sp = text.rfind(" ", hi, b)
        b = sp if sp != -1 else b
    return a, b


def _spans_ok(spans: Iterable[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    out = []
    for s in spans:
        if not isinstance(s, dict):
            continue
        a, b = s.get("start"), s.get("end")
        if isinstance(a, int) and isinstance(b, int) and not isinstance(a, bool) and 0 <= a < b <= n:
            out.append(s)
    return out


def highlight(text: str, spans: list[dict[str, Any]], lo: int = 0, hi: int | None = None,
              hot: tuple[int, int] | None = None, offset: int = 0) -> Markup:
    """``text[lo:hi]`` with each span marked and labelled; ``hot`` is underlined.

    Span and hot offsets are in the coordinates of the full document; ``offset`` is the
    document position of ``text[0]`` (non-zero when ``text`` is itself an excerpt).
    Overlapping (nested) spans are drawn as nested marks over their shared pieces.
    """
    hi = len(text) if hi is None else hi
    spans = [dict(s, start=s["start"] - offset, end=s["end"] - offset)
             for s in _spans_ok(spans, offset + len(text)) if s["start"] - offset >= 0]
    hot_l = (hot[0] - offset, hot[1] - offset) if hot else None
    edges = [(s["start"], s["end"]) for s in spans] + ([hot_l] if hot_l else [])
    pts = sorted({lo, hi} | {min(max(x, lo), hi) for edge in edges for x in edge})
    out: list[str] = ["…"] if lo > 0 else []
    for a, b in itertools.pairwise(pts):
        if a < b:
            out += _marked_piece(text, a, b, spans, hot_l)
    if hi < len(text):
        out.append("…")
    return Markup("".join(out))


def _marked_piece(text: str, a: int, b: int, spans: list[dict[str, Any]], hot: tuple[int, int] | None) -> list[str]:
    """``text[a:b]`` inside a mark per covering span (outermost first), underlined when inside
    ``hot``, followed by the label of each span that ends there."""
    piece = _e(text[a:b])
    covering = [s for s in spans if s["start"] <= a and b <= s["end"]]
    for s in sorted(covering, key=lambda s: (s["start"], -s["end"])):
        piece = f'<mark class="ent" title="{_e(s.get("label", ""))}">{piece}</mark>'
    if hot and hot[0] <= a and b <= hot[1]:
        piece = f'<span class="hot">{piece}</span>'
    return [piece] + [f'<sup class="lab">{_e(s.get("label", ""))}</sup>' for s in covering if s["end"] == b]


def support_class(weight: Any) -> str:
    """``sup-hi`` (≥ 0.75), ``sup-mid`` (≥ 0.5), ``sup-lo`` (below, or unknown): the colour of a delivered span."""
    if isinstance(weight, (int, float)) and not isinstance(weight, bool):
        return "sup-hi" if weight >= 0.75 else "sup-mid" if weight >= 0.5 else "sup-lo"
    return "sup-lo"


def support_marks(text: str, spans: list[dict[str, Any]]) -> Markup:
    """A delivered document: each span marked, coloured by its support weight, its label,
    support and annotators in the tooltip, hotspot spans underlined (flat spans; an overlap
    is drawn only for the first)."""
    out: list[str] = []
    pos = 0
    for sp in sorted(_spans_ok(spans, len(text)), key=lambda x: (x["start"], -x["end"])):
        a, b = sp["start"], sp["end"]
        if a < pos:
            continue
        sup = sp.get("support") if isinstance(sp.get("support"), dict) else {}
        w = sup.get("weight")
        who = ", ".join(map(str, sup.get("annotators") or []))
        tip = f"{sp.get('label', '')} · support {w if w is not None else '–'}" + (f" · {who}" if who else "") + (
            " · hotspot" if sp.get("hotspot") else "")
        piece = f'<mark class="ent {support_class(w)}" title="{_e(tip)}">{_e(text[a:b])}</mark>'
        if sp.get("hotspot"):
            piece = f'<span class="hot">{piece}</span>'
        out.append(_e(text[pos:a]) + piece + f'<sup class="lab">{_e(sp.get("label", ""))}</sup>')
        pos = b
    out.append(_e(text[pos:]))
    return Markup("".join(out))


def span_chips(spans: list[dict[str, Any]]) -> Markup:
    """Spans as a list of ``text LABEL`` chips (when the document text is not available)."""
    if not spans:
        return Markup('<span class="none">no mention</span>')
    return Markup(" ".join(
        f'<span class="chip"><mark class="ent">{_e(s.get("text", ""))}</mark><sup class="lab">'
        f'{_e(s.get("label", ""))}</sup></span>' for s in spans if isinstance(s, dict)))


_WORD = re.compile(r"\s+|[^\s]+")


def word_diff(old: str, new: str) -> Markup:
    """Word-level diff: deleted words in <del>, inserted words in <ins>."""
    a, b = _WORD.findall(old), _WORD.findall(new)
    out: list[str] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op == "equal":
            out.append(_e("".join(a[i1:i2])))
        if op in ("delete", "replace"):
            out.append(f"<del>{_e(''.join(a[i1:i2]))}</del>")
        if op in ("insert", "replace"):
            out.append(f"<ins>{_e(''.join(b[j1:j2]))}</ins>")
    return Markup("".join(out))


def _rule_text(r: Any) -> str:
    parts = [r.text]
    for ex in r.examples:
        ms = "; ".join(f"{m.text} = {m.label}" for m in ex.mentions) or "no mention"
        parts.append(f"Example: {ex.text} → {ms}" + (f" ({ex.rationale})" if ex.rationale else ""))
    return "\n".join(parts)


def guideline_diff(old: Any, new: Any) -> list[dict[str, Any]]:
    """What changed between two guidelines, rule by rule (matched on scope and id).

    Returns entries ``{"scope", "id", "change": added|removed|changed, "html"}`` plus a
    ``goal`` entry when G changed. Model-specific scopes are the annotator ids.
    """
    out: list[dict[str, Any]] = []
    if old is None:
        return out
    if old.goal != new.goal:
        out.append({"scope": "goal", "id": "G", "change": "changed", "html": word_diff(old.goal, new.goal)})

    def rules(g: Any) -> dict[tuple[str, str], Any]:
        d = {("common", r.id): r for r in g.all_common()}
        for ann in g.model_specific:
            d.update({(ann, r.id): r for r in g.for_annotator(ann)})
        return d

    ro, rn = rules(old), rules(new)
    for key in list(rn) + [k for k in ro if k not in rn]:
        scope, rid = key
        if key not in ro:
            out.append({"scope": scope, "id": rid, "change": "added",
                        "html": Markup(f"<ins>{_e(_rule_text(rn[key]))}</ins>")})
        elif key not in rn:
            out.append({"scope": scope, "id": rid, "change": "removed",
                        "html": Markup(f"<del>{_e(_rule_text(ro[key]))}</del>")})
        else:
            a, b = _rule_text(ro[key]), _rule_text(rn[key])
            if a != b:
                out.append({"scope": scope, "id": rid, "change": "changed", "html": word_diff(a, b)})
    return out


def yaml_diff(old: str | None, new: str | None, name_old: str, name_new: str) -> Markup:
    """A unified line diff of two guideline YAML files, lines coloured by kind."""
    if old is None or new is None:
        return Markup("")
    lines = difflib.unified_diff(old.splitlines(), new.splitlines(), name_old, name_new, lineterm="", n=2)
    out = []
    for ln in lines:
        cls = "add" if ln.startswith("+") and not ln.startswith("+++") else \
              "rem" if ln.startswith("-") and not ln.startswith("---") else "hdr" if ln.startswith("@@") else ""
        out.append(f'<span class="{cls}">{_e(ln)}</span>' if cls else _e(ln))
    return Markup("\n".join(out))
