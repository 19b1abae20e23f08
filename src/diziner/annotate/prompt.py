"""Annotator prompts Θk(t) = (Σ, C(t), Rk(t), G(t)) rendered from versioned templates.

Templates are files in ``diziner/templates`` (``annotate_chat.v1.j2``,
``annotate_fewshot.v1.j2``), loaded with :mod:`importlib.resources`; the version is part
of the template name and is recorded with every result (:func:`template_id`).

Layout (static parts first, the document last, so a server's prefix cache is reused):

- ``chat``: a system message (schema with is / is-not examples, common instructions C
  with worked examples, this annotator's model-specific instructions Rk, goal G, the
  answer format), then demonstrations as earlier user/assistant turns (the schema's
  demonstrations, then the worked examples of C and Rk; demonstrations without mentions
  are moved first, since weak models copy an empty answer that comes right before the
  document), then one user turn with the
  document between ``<<<DOCUMENT>>>`` and ``<<<END OF DOCUMENT>>>``. Output: a JSON
  object ``{"mentions": [{"text", "label"}]}``.
- ``fewshot`` (base models): a plain completion prompt — a short header with Σ, C, Rk
  and G, then ``Text: ...\\nEntities: [...]\\n\\n`` per demonstration, ending with
  ``Text: <document>\\nEntities:``. Output: a bare JSON array (what a base model
  continues naturally and a grammar constrains simply). Line breaks in the document are
  replaced by spaces (same length, so offsets are unchanged) so the document cannot
  start a line of its own.

Everything before the document is byte-identical for every document of one annotator
and iteration. A document that contains a fence marker has the marker's first ``<``
replaced by ``‹`` (same length) so it cannot close the fence. Model-specific instructions
are the annotator's own; the ids of other annotators are replaced by "another annotator"
in instruction texts and rationales.
"""
from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any, Iterable, Literal

from diziner.annotate.ground import ground_mentions
from diziner.errors import ConfigError
from diziner.guideline import Guideline, Instruction
from diziner.llm.base import LLMRequest
from diziner.schema import WorkedExample

__all__ = ["TEMPLATE_VERSION", "PromptStyle", "BEGIN_MARK", "END_MARK", "MAX_MENTION_CHARS", "template_id",
           "build_request", "build_reask_request", "mentions_json_schema", "default_params", "static_prefix"]

PromptStyle = Literal["chat", "fewshot"]
TEMPLATE_VERSION = "v1"
BEGIN_MARK = "<<<DOCUMENT>>>"
END_MARK = "<<<END OF DOCUMENT>>>"
MAX_MENTION_CHARS = 100  # maxLength of a mention's text in the output schema
TOKENS_PER_MENTION = 24  # output budget per mention, for max_tokens
FEWSHOT_STOP = ["\n\n", "\nText:"]
_STYLES = ("chat", "fewshot")
_LINE_BREAKS = re.compile(r"[\r\n\v\f\x1c\x1d\x1e\x85\u2028\u2029]")


def template_id(prompt_style: str) -> str:
    """Name and version of the template a style uses, e.g. ``annotate_chat.v1``."""
    _check_style(prompt_style)
    return f"annotate_{prompt_style}.{TEMPLATE_VERSION}"


def _check_style(prompt_style: str) -> None:
    if prompt_style not in _STYLES:
        raise ConfigError(f"unknown prompt style {prompt_style!r}: use one of {', '.join(_STYLES)}")


@lru_cache(maxsize=None)
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


def default_params(prompt_style: str, max_mentions: int = 32) -> dict[str, Any]:
    """Greedy decoding, an output budget sized to ``max_mentions``, a mild repetition penalty."""
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


def _instructions(items: list[Instruction], scrub: Any, style: str) -> list[dict[str, Any]]:
    return [{"id": ins.id, "text": scrub(ins.text),
             "examples": [{"text": ex.text, "answer": _answer(ex, style), "rationale": scrub(ex.rationale)}
                          for ex in ins.examples]}
            for ins in items]


def _demos(guideline: Guideline, annotator_id: str, max_demos: int | None) -> list[WorkedExample]:
    out: list[WorkedExample] = []
    seen: set[str] = set()
    pool = list(guideline.schema_.demonstrations)
    for ins in guideline.all_common() + guideline.for_annotator(annotator_id):
        pool.extend(ins.examples)
    for ex in pool:
        if ex.text in seen:
            continue
        seen.add(ex.text)
        out.append(ex)
    out = out if max_demos is None else out[:max_demos]
    # demos without mentions first: weak models copy an empty answer given right before the document
    return sorted(out, key=lambda ex: bool(ex.mentions))


def _fence_safe(text: str) -> str:
    for mark in (BEGIN_MARK, END_MARK):
        text = text.replace(mark, "‹" + mark[1:])
    return text


def _one_line(text: str) -> str:
    return _LINE_BREAKS.sub(" ", text)


def build_request(guideline: Guideline, annotator_id: str, prompt_style: PromptStyle, document_text: str, *,
                  max_mentions: int = 32, params: dict[str, Any] | None = None,
                  other_annotators: Iterable[str] = (), max_demos: int | None = 8,
                  iteration: int | None = None) -> LLMRequest:
    """The annotation request of one annotator for one document (or chunk); see module docstring.

    ``params`` override the defaults of :func:`default_params`. ``other_annotators`` are
    ids to keep out of this annotator's prompt (the guideline's own annotator ids always are).
    """
    _check_style(prompt_style)
    if max_mentions < 1:
        raise ConfigError("max_mentions must be at least 1")
    schema = guideline.schema_
    labels = schema.label_names
    others = (set(guideline.model_specific) | set(other_annotators)) - {annotator_id}
    scrub = _scrubber(others)
    tpl = _template(template_id(prompt_style))
    common = _instructions(guideline.all_common(), scrub, prompt_style)
    specific = _instructions(guideline.for_annotator(annotator_id), scrub, prompt_style)
    demos = _demos(guideline, annotator_id, max_demos)
    merged = default_params(prompt_style, max_mentions)
    merged.update(params or {})
    tags = {"purpose": "annotate", "annotator": annotator_id,
            "iteration": guideline.iteration if iteration is None else iteration}
    if prompt_style == "chat":
        messages = [{"role": "system", "content": str(tpl.system(schema.labels, labels, common, specific,
                                                                 guideline.goal, max_mentions, BEGIN_MARK, END_MARK))}]
        for ex in demos:
            messages.append({"role": "user", "content": str(tpl.user(_fence_safe(ex.text), BEGIN_MARK, END_MARK))})
            messages.append({"role": "assistant", "content": _answer(ex, "chat")})
        messages.append({"role": "user", "content": str(tpl.user(_fence_safe(document_text), BEGIN_MARK, END_MARK))})
        return LLMRequest(messages=messages, json_schema=mentions_json_schema(labels, max_mentions),
                          params=merged, **tags)
    parts = [str(tpl.header(schema.labels, labels, common, specific, guideline.goal, max_mentions))]
    for ex in demos:
        parts.append(str(tpl.demo(_one_line(ex.text), _answer(ex, "fewshot"))))
    parts.append(str(tpl.query(_one_line(document_text), False)))
    return LLMRequest(prompt="".join(parts), json_schema=mentions_json_schema(labels, max_mentions, top_level_array=True),
                      params=merged, **tags)


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
    if previous.messages is not None:
        tpl = _template(f"annotate_chat.{TEMPLATE_VERSION}")
        messages = list(previous.messages) + [
            {"role": "assistant", "content": (bad_answer or "")[:4000]},
            {"role": "user", "content": str(tpl.reask(error or "not valid JSON", labels))},
        ]
        return previous.model_copy(update={"messages": messages, "params": params})
    tpl = _template(f"annotate_fewshot.{TEMPLATE_VERSION}")
    prompt = previous.prompt or ""
    nudge = str(tpl.query("", True))  # "Text: \n(nudge)\nEntities:"
    nudge_line = nudge[nudge.index("\n") + 1 : nudge.rindex("Entities:")]
    if nudge_line not in prompt and prompt.endswith("Entities:"):
        prompt = prompt[: -len("Entities:")] + nudge_line + "Entities:"
    return previous.model_copy(update={"prompt": prompt, "params": params})


def static_prefix(request: LLMRequest) -> str:
    """The part of a request that does not depend on the document (for cache-reuse checks)."""
    if request.messages is not None:
        body = json.dumps(request.messages[:-1], ensure_ascii=False)
        last = request.messages[-1]["content"]
        return body + last[: last.index(BEGIN_MARK) + len(BEGIN_MARK)]
    prompt = request.prompt or ""
    return prompt[: prompt.rindex("\nText: ") + len("\nText: ")]  # the document is one line
