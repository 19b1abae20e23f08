"""Annotator prompts Θk(t) = (Σ, C(t), Rk(t), G(t)) rendered from versioned templates.

Templates are files in ``diziner/templates`` (``annotate_<style>.<version>.j2``), loaded
with :mod:`importlib.resources`; the version is part of the template name and is recorded
with every result (:func:`template_id`). ``v2`` is the default; ``v1`` stays renderable
(``build_request(..., template_version="v1")``) so older runs can be reproduced.

Worked examples (:func:`select_examples`): the schema's demonstrations and the worked
examples of C and of this annotator's Rk compete for one token budget,
``example_budget`` (default :data:`EXAMPLE_TOKEN_BUDGET`; tokens estimated as characters / 4
of the example as the prompt renders it, :func:`example_tokens`). The newest come first
(an instruction's iteration is the last of ``provenance.added_in`` and ``changed_in``;
demonstrations count as iteration 0), then, within one iteration, the annotator's own Rk
before C before the demonstrations, an instruction's first example before its second.
Examples are taken first-fit in that order; those chosen are shown in guideline order
(demonstrations, C, Rk), each text once; the same guideline always gives the same prompt.

Layout (static parts first, the document last, so a server's or llama.cpp's prefix
cache is reused; everything before the document is byte-identical for every document of
one annotator and iteration):

- ``chat``: a system message, then the chosen examples as earlier user/assistant turns
  (at most ``max_demos`` when given; those without mentions first, since weak models copy
  an empty answer that comes right before the document), then one user turn with the
  document between ``<<<DOCUMENT>>>`` and ``<<<END OF DOCUMENT>>>``. Output:
  ``{"mentions": [{"text", "label"}]}``. v1's system message is long (full definitions,
  is / is-not examples, instructions with their chosen worked examples, goal, format
  rules); v2's is short: one line per label (first sentence of its definition, three
  positive examples), C and Rk as rules (chosen examples that are not demo turns listed
  under their rule), G, the format.
- ``fewshot`` (base models): a plain completion prompt — a header with Σ, C, Rk and G,
  then ``Text: ...`` / ``Entities:`` / JSON list per chosen example, ending with
  ``Text: <document>`` and ``Entities:``. Output: a bare JSON array. v2 puts the list on
  a line of its own (the prompt ends ``Entities:\n``, so the model's natural first token
  "[" is the one the grammar allows; v1 ended ``Entities:`` and the grammar forbade the
  natural " ["), makes blocks only of examples with mentions, and says nothing about
  empty answers. A rule's chosen example that is not a block (no mentions, or beyond
  ``max_demos``) is written under the rule in the v2 header (``Example: "..." -> Ada (PER)``,
  or ``-> no names``), so what the rule says reaches the model either way. Line breaks in
  the document are replaced by spaces (same length, offsets unchanged) so the document
  cannot start a line of its own.

A document that contains a fence marker has the marker's first ``<`` replaced by ``‹``
(same length) so it cannot close the fence. Model-specific instructions are the
annotator's own; the ids of other annotators are replaced by "another annotator" in
instruction texts and rationales. Measurements: ``scripts/probe_prompts.py`` and
docs/annotation.md.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterable
from functools import cache
from typing import Any, Literal

from diziner.annotate.chunk import approx_tokens
from diziner.annotate.ground import ground_mentions
from diziner.errors import ConfigError
from diziner.guideline import Guideline, Instruction
from diziner.llm.base import LLMRequest
from diziner.schema import WorkedExample

__all__ = [
    "BEGIN_MARK",
    "END_MARK",
    "EXAMPLE_TOKEN_BUDGET",
    "MAX_MENTION_CHARS",
    "TEMPLATE_VERSION",
    "TEMPLATE_VERSIONS",
    "PromptStyle",
    "build_reask_request",
    "build_request",
    "default_params",
    "example_tokens",
    "mentions_json_schema",
    "select_examples",
    "short_definition",
    "static_prefix",
    "template_id",
]

PromptStyle = Literal["chat", "fewshot"]
TEMPLATE_VERSION = "v2"  # the default; every version in TEMPLATE_VERSIONS stays renderable
TEMPLATE_VERSIONS = ("v1", "v2")
BEGIN_MARK = "<<<DOCUMENT>>>"
END_MARK = "<<<END OF DOCUMENT>>>"
MAX_MENTION_CHARS = 100  # maxLength of a mention's text in the output schema
TOKENS_PER_MENTION = 24  # output budget per mention, for max_tokens
FEWSHOT_STOP = ["\n\n", "\nText:"]
# Token budget of the worked examples in one prompt (estimated as characters / 4 of their
# rendered form). 320 holds the three demonstrations of every shipped schema (examples/ and
# the benchmark schemas: 143-292 in the chat form), so iteration-0 prompts are unchanged,
# and refined guidelines cannot make a prompt grow without bound (docs/annotation.md).
EXAMPLE_TOKEN_BUDGET = 320
_STYLES = ("chat", "fewshot")
_LINE_BREAKS = re.compile(r"[\r\n\v\f\x1c\x1d\x1e\x85\u2028\u2029]")


def template_id(prompt_style: str, version: str | None = None) -> str:
    """Name and version of the template a style uses, e.g. ``annotate_chat.v2`` (default version)."""
    _check_style(prompt_style)
    return f"annotate_{prompt_style}.{_version(version)}"


def _version(version: str | None) -> str:
    v = TEMPLATE_VERSION if version is None else version
    if v not in TEMPLATE_VERSIONS:
        raise ConfigError(f"unknown annotation template version {v!r}: use one of {', '.join(TEMPLATE_VERSIONS)}")
    return v


_SENTENCE_END = re.compile(r"(?<![A-Z])(?<!\b[a-z])(?<!e\.g)(?<!i\.e)[.!?](?=\s+[A-Z\"(“])")


def short_definition(definition: str, max_chars: int = 200) -> str:
    """The first sentence of a label definition (at most ``max_chars``, cut at a word), for short prompts."""
    text = " ".join(definition.split())
    m = _SENTENCE_END.search(text)
    if m:
        text = text[: m.end()]
    if len(text) > max_chars:
        cut = text[:max_chars].rsplit(" ", 1)[0].rstrip(",;:(")
        text = cut + " ..."
    return text


def _label_views(labels: list[Any]) -> list[dict[str, Any]]:
    return [{"name": lab.name, "definition": lab.definition, "short": short_definition(lab.definition),
             "positive_examples": list(lab.positive_examples), "negative_examples": list(lab.negative_examples)}
            for lab in labels]


def _check_style(prompt_style: str) -> None:
    if prompt_style not in _STYLES:
        raise ConfigError(f"unknown prompt style {prompt_style!r}: use one of {', '.join(_STYLES)}")


@cache
def _template(name: str) -> Any:
    from importlib.resources import files

    import jinja2

    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                             undefined=jinja2.StrictUndefined, autoescape=False)
    env.filters["q"] = lambda v: json.dumps(v, ensure_ascii=False)
    src = files("diziner").joinpath("templates", f"{name}.j2").read_text(encoding="utf-8")
    return env.from_string(src).module


def mentions_json_schema(labels: list[str], max_mentions: int = 32, *, top_level_array: bool = False) -> dict[str, Any]:
    """The output schema: mentions with a label enum, bounded text length and item count."""
    item = {
        "type": "object",
        "properties": {
            "text": {"type": "string", "minLength": 1, "maxLength": MAX_MENTION_CHARS},
            "label": {"type": "string", "enum": list(labels)},
        },
        "required": ["text", "label"],
        "additionalProperties": False,
    }
    array = {"type": "array", "items": item, "maxItems": max_mentions}
    if top_level_array:
        return array
    return {"type": "object", "properties": {"mentions": array}, "required": ["mentions"], "additionalProperties": False}


def default_params(prompt_style: str, max_mentions: int = 32, version: str | None = None) -> dict[str, Any]:
    """Greedy decoding, an output budget sized to ``max_mentions``, a mild repetition penalty.

    The penalty (1.1) stays in v2 few-shot too: without it Gemma found more entities on
    examples/ but looped and invented mentions on harder data (scripts/probe_prompts.py,
    docs/annotation.md). ``version`` is checked (the defaults are the same for v1 and v2).
    """
    _version(version)
    p: dict[str, Any] = {"temperature": 0.0, "max_tokens": 16 + TOKENS_PER_MENTION * max_mentions, "repeat_penalty": 1.1}
    if prompt_style == "fewshot":
        p["stop"] = list(FEWSHOT_STOP)
    return p


def _scrubber(names: Iterable[str]) -> Any:
    names = sorted({n for n in names if n and len(n) >= 3}, key=len, reverse=True)
    if not names:
        return lambda s: s
    rx = re.compile(r"(?<!\w)(?:" + "|".join(re.escape(n) for n in names) + r")(?!\w)", re.IGNORECASE)
    return lambda s: rx.sub("another annotator", s)


def _ordered_mentions(ex: WorkedExample) -> list[dict[str, str]]:
    """The example's mentions in order of occurrence (how the model is asked to list them)."""
    g = ground_mentions(ex.text, [(m.text, m.label) for m in ex.mentions])
    grounded = iter(sorted(zip((s.start for s in g.spans), range(len(g.spans)), g.spans)))
    placed = [{"text": sp.text, "label": sp.label} for _, _, sp in grounded]
    # mentions that could not be placed (should not happen: examples are validated) go last
    ok = [st in ("exact", "fuzzy") for st in g.statuses]
    rest = [{"text": m.text, "label": m.label} for m, good in zip(ex.mentions, ok) if not good]
    return placed + rest


def _answer(ex: WorkedExample, style: str) -> str:
    ms = _ordered_mentions(ex)
    return json.dumps(ms if style == "fewshot" else {"mentions": ms}, ensure_ascii=False)


def _marks(ex: WorkedExample) -> str:
    """A worked example's answer in words, for a rule line of the few-shot header."""
    ms = _ordered_mentions(ex)
    return "; ".join(f"{m['text']} ({m['label']})" for m in ms) if ms else "no names"


def _instructions(items: list[Instruction], scrub: Any, style: str, listed: set[int]) -> list[dict[str, Any]]:
    """Instruction views; ``examples`` holds those of its worked examples whose ``id()`` is in ``listed``."""
    return [{"id": ins.id, "text": scrub(ins.text),
             "examples": [{"text": ex.text, "answer": _answer(ex, style), "marks": _marks(ex),
                           "rationale": scrub(ex.rationale)}
                          for ex in ins.examples if id(ex) in listed]}
            for ins in items]


def example_tokens(ex: WorkedExample, prompt_style: str, version: str | None = None) -> int:
    """Estimated tokens of one worked example in a prompt: characters / 4 (rounded up) of its
    demonstration as the style renders it (few-shot: the ``Text:`` / ``Entities:`` block; chat:
    the fenced user turn and the assistant's answer)."""
    _check_style(prompt_style)
    v = _version(version)
    tpl = _template(template_id(prompt_style, v))
    if prompt_style == "fewshot":
        rendered = str(tpl.demo(_one_line(ex.text), _answer(ex, "fewshot")))
    else:
        rendered = str(tpl.user(_fence_safe(ex.text), BEGIN_MARK, END_MARK)) + _answer(ex, "chat")
    return approx_tokens(rendered)


def _recency(ins: Instruction) -> int:
    return max([ins.provenance.added_in, *ins.provenance.changed_in])


def _candidates(guideline: Guideline, annotator_id: str) -> list[tuple[tuple[int, ...], WorkedExample]]:
    """(priority key, example) for every worked example, in guideline order (demonstrations, C, Rk).

    Key: newest instruction first; within an iteration own Rk (0), C (1), demonstrations (2);
    then an instruction's first example before its second; then guideline order.
    """
    out: list[tuple[tuple[int, ...], WorkedExample]] = []
    pos = 0
    for ex in guideline.schema_.demonstrations:
        out.append(((0, 2, 0, pos), ex))
        pos += 1
    for scope, items in ((1, guideline.all_common()), (0, guideline.for_annotator(annotator_id))):
        for ins in items:
            for k, ex in enumerate(ins.examples):
                out.append(((-_recency(ins), scope, k, pos), ex))
                pos += 1
    return out


def _select(guideline: Guideline, annotator_id: str, prompt_style: str, budget: int | None,
            version: str | None) -> list[tuple[tuple[int, ...], WorkedExample]]:
    """The chosen (key, example) pairs in priority order."""
    chosen: list[tuple[tuple[int, ...], WorkedExample]] = []
    seen: set[str] = set()
    used = 0
    for key, ex in sorted(_candidates(guideline, annotator_id), key=lambda c: c[0]):
        if ex.text in seen:
            continue
        cost = 0 if budget is None else example_tokens(ex, prompt_style, version)
        if budget is not None and used + cost > budget:
            continue
        seen.add(ex.text)
        used += cost
        chosen.append((key, ex))
    return chosen


def select_examples(guideline: Guideline, annotator_id: str, prompt_style: str = "fewshot", *,
                    budget: int | None = EXAMPLE_TOKEN_BUDGET, template_version: str | None = None
                    ) -> list[WorkedExample]:
    """The worked examples an annotator's prompt carries, in guideline order (see module docstring).

    Every example text once (its highest-ranked occurrence); taken first-fit in priority
    order while the sum of :func:`example_tokens` stays within ``budget`` (``None``: all).
    """
    chosen = _select(guideline, annotator_id, prompt_style, budget, template_version)
    return [ex for _, ex in sorted(chosen, key=lambda c: c[0][-1])]


def _demos(chosen: list[tuple[tuple[int, ...], WorkedExample]], prompt_style: str, version: str,
           max_demos: int | None) -> list[WorkedExample]:
    """The chosen examples (priority order) shown as demonstrations: turns or blocks, in guideline order.

    v2 few-shot makes blocks only of examples with mentions (a base model copies empty
    answers), unless none has any. ``max_demos`` keeps the highest-ranked. The others are
    listed under their rule by the templates that do so.
    """
    demos = list(chosen)
    if version != "v1" and prompt_style == "fewshot":
        demos = [c for c in demos if c[1].mentions] or demos
    if max_demos is not None:
        demos = demos[: max(0, max_demos)]
    ordered = [ex for _, ex in sorted(demos, key=lambda c: c[0][-1])]
    # demos without mentions first: weak models copy an empty answer given right before the document
    return sorted(ordered, key=lambda ex: bool(ex.mentions))


def _fence_safe(text: str) -> str:
    for mark in (BEGIN_MARK, END_MARK):
        text = text.replace(mark, "‹" + mark[1:])
    return text


def _one_line(text: str) -> str:
    return _LINE_BREAKS.sub(" ", text)


def build_request(guideline: Guideline, annotator_id: str, prompt_style: PromptStyle, document_text: str, *,
                  max_mentions: int = 32, params: dict[str, Any] | None = None,
                  other_annotators: Iterable[str] = (), max_demos: int | None = None,
                  example_budget: int | None = EXAMPLE_TOKEN_BUDGET,
                  iteration: int | None = None, template_version: str | None = None) -> LLMRequest:
    """The annotation request of one annotator for one document (or chunk); see module docstring.

    ``params`` override the defaults of :func:`default_params`. ``other_annotators`` are
    ids to keep out of this annotator's prompt (the guideline's own annotator ids always are).
    ``example_budget`` bounds the estimated tokens of the worked examples
    (:func:`select_examples`; ``None``: no bound); ``max_demos`` (default: no limit) bounds how
    many of them are demonstration turns / blocks, the others being listed under their rule.
    ``template_version`` picks an older template (default :data:`TEMPLATE_VERSION`).
    """
    _check_style(prompt_style)
    version = _version(template_version)
    if max_mentions < 1:
        raise ConfigError("max_mentions must be at least 1")
    if example_budget is not None and example_budget < 0:
        raise ConfigError("example_budget must be at least 0 (or None for no bound)")
    schema = guideline.schema_
    labels = schema.label_names
    others = (set(guideline.model_specific) | set(other_annotators)) - {annotator_id}
    scrub = _scrubber(others)
    tpl = _template(template_id(prompt_style, version))
    chosen = _select(guideline, annotator_id, prompt_style, example_budget, version)
    demos = _demos(chosen, prompt_style, version, max_demos)
    if version == "v1":  # v1 chat lists every chosen example under its rule too; v1 few-shot none
        listed = {id(ex) for _, ex in chosen}
    else:
        shown = {id(ex) for ex in demos}
        listed = {id(ex) for _, ex in chosen if id(ex) not in shown}
    common = _instructions(guideline.all_common(), scrub, prompt_style, listed)
    specific = _instructions(guideline.for_annotator(annotator_id), scrub, prompt_style, listed)
    label_info = schema.labels if version == "v1" else _label_views(schema.labels)
    merged = default_params(prompt_style, max_mentions, version)
    merged.update(params or {})
    tags = {"purpose": "annotate", "annotator": annotator_id,
            "iteration": guideline.iteration if iteration is None else iteration}
    if prompt_style == "chat":
        messages = [{"role": "system", "content": str(tpl.system(label_info, labels, common, specific,
                                                                 guideline.goal, max_mentions, BEGIN_MARK, END_MARK))}]
        for ex in demos:
            messages.append({"role": "user", "content": str(tpl.user(_fence_safe(ex.text), BEGIN_MARK, END_MARK))})
            messages.append({"role": "assistant", "content": _answer(ex, "chat")})
        messages.append({"role": "user", "content": str(tpl.user(_fence_safe(document_text), BEGIN_MARK, END_MARK))})
        return LLMRequest(messages=messages, json_schema=mentions_json_schema(labels, max_mentions),
                          params=merged, **tags)
    parts = [str(tpl.header(label_info, labels, common, specific, guideline.goal, max_mentions))]
    for ex in demos:
        parts.append(str(tpl.demo(_one_line(ex.text), _answer(ex, "fewshot"))))
    parts.append(str(tpl.query(_one_line(document_text), False)))
    return LLMRequest(prompt="".join(parts), json_schema=mentions_json_schema(labels, max_mentions, top_level_array=True),
                      params=merged, **tags)


def _request_version(req: LLMRequest) -> str:
    """The template version a request was built with (v1 and v2 differ in the few-shot query line)."""
    if req.messages is not None:
        return "v1" if str(req.messages[0].get("content", "")).startswith("You are a careful annotator") else "v2"
    return "v2" if (req.prompt or "").endswith("Entities:\n") else "v1"


def build_reask_request(previous: LLMRequest, bad_answer: str, error: str, *, labels: list[str],
                        attempt: int = 1) -> LLMRequest:
    """A corrective request after an unreadable answer; always differs from ``previous``.

    Chat: the bad answer is appended as an assistant turn, followed by a short correction.
    Few-shot: the query gets a one-line nudge before ``Entities:``. From the second re-ask
    on, the temperature is raised a little and a seed set, so the answer can change.
    """
    params = dict(previous.params)
    if attempt >= 2:
        params["temperature"] = min(1.0, 0.3 * (attempt - 1))
        params["seed"] = attempt
    version = _request_version(previous)
    if previous.messages is not None:
        tpl = _template(f"annotate_chat.{version}")
        messages = list(previous.messages) + [
            {"role": "assistant", "content": (bad_answer or "")[:4000]},
            {"role": "user", "content": str(tpl.reask(error or "not valid JSON", labels))},
        ]
        return previous.model_copy(update={"messages": messages, "params": params})
    tpl = _template(f"annotate_fewshot.{version}")
    prompt = previous.prompt or ""
    nudge = str(tpl.query("", True))  # "Text: \n(nudge)\nEntities:" (v2: and a line break)
    tail = nudge[nudge.rindex("Entities:"):]
    nudge_line = nudge[nudge.index("\n") + 1 : nudge.rindex("Entities:")]
    if nudge_line not in prompt and prompt.endswith(tail):
        prompt = prompt[: -len(tail)] + nudge_line + tail
    return previous.model_copy(update={"prompt": prompt, "params": params})


def static_prefix(request: LLMRequest) -> str:
    """The part of a request that does not depend on the document (for cache-reuse checks)."""
    if request.messages is not None:
        body = json.dumps(request.messages[:-1], ensure_ascii=False)
        last = request.messages[-1]["content"]
        return body + last[: last.index(BEGIN_MARK) + len(BEGIN_MARK)]
    prompt = request.prompt or ""
    return prompt[: prompt.rindex("\nText: ") + len("\nText: ")]  # the document is one line
