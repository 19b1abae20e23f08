"""The companion guideline: iteration 0 with a glossary of the mentions its pilot agreed on.

When the label-free selection keeps the iteration-0 guideline (or one that prompts the same), the
final annotation has no refined guideline to pair it with (BENCHMARKS.md §14). It is paired
instead with its *companion*: the iteration-0 guideline plus one common rule that lists the
mentions every annotator of the iteration-0 pilot tagged with the same extent and label
(plausible by the schema, as the consensus supervisor checks its references), without any
worked example — a list cannot teach partial answers the way an agreed sentence can (§10).
Screened on test sentences disjoint from the reported ones in BENCHMARKS.md §15: the companion
alone is not better than iteration 0, but the delivery over both is, on the five datasets where
selection keeps iteration 0 — a second prompt that recovers recall, not a better guideline.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from diziner.guideline import Guideline, Instruction, Provenance
from diziner.supervise.consensus import MentionPrior, implausible_mention

GLOSSARY_ID = "agreed-mentions"
GLOSSARY_MAX = 12  # mentions listed (the most frequent first)


def agreed_mentions(texts: dict[str, str], answers: list[dict[str, list]], prior: MentionPrior
                    ) -> list[tuple[str, str]]:
    """(text, label) of the spans every annotator tagged alike — same start, end and label — in
    the documents all of them answered (``answers``: per annotator, document id → spans), leaving
    out what the schema makes implausible (:func:`implausible_mention`); the most frequent first,
    then in document-id and offset order."""
    counts: Counter = Counter()
    if not answers:
        return []
    for doc in sorted(set.intersection(*(set(a) for a in answers)) & set(texts)):
        keys = [{(s.start, s.end, s.label) for s in a[doc]} for a in answers]
        for start, end, label in sorted(set.intersection(*keys)):
            text = texts[doc][start:end]
            if implausible_mention(text, label, texts[doc], prior) is None:
                counts[(text, label)] += 1
    return [k for k, _ in counts.most_common()]


def is_companion(guideline: Guideline) -> bool:
    """Is this a companion guideline (it carries the glossary rule)?"""
    return any(ins.id == GLOSSARY_ID for ins in guideline.common)


def glossary_guideline(initial: Guideline, mentions: list[tuple[str, str]]) -> Guideline:
    """``initial`` with one more common rule listing ``mentions`` (no worked example); the same iteration."""
    items = ", ".join(f'"{t}" ({lab})' for t, lab in mentions)
    rule = Instruction(id=GLOSSARY_ID, text=f"Mentions every annotator tagged the same way in this corpus: {items}.",
                       provenance=Provenance(added_in=initial.iteration, patterns=[GLOSSARY_ID], source="consensus"))
    return initial.model_copy(update={
        "common": [*initial.common, rule],
        "changelog": [*initial.changelog, f"companion of iteration {initial.iteration}: {len(mentions)} agreed "
                      "mention(s) listed (BENCHMARKS.md §15)"]})


def companion_guideline(initial: Guideline, pilot: Path, annotators: list[str], max_mentions: int = GLOSSARY_MAX
                        ) -> Guideline | None:
    """The companion of ``initial`` from its pilot iteration folder (``sample.jsonl`` and
    ``annotations/<annotator>.jsonl`` of ``annotators``), or None when that pilot has no agreed
    mention (or is missing)."""
    from diziner.annotate.runner import read_answered_spans
    from diziner.atomic import read_jsonl

    files = [pilot / "annotations" / f"{a}.jsonl" for a in annotators]
    if len(files) < 2 or not (pilot / "sample.jsonl").is_file() or not all(f.is_file() for f in files):
        return None
    texts = {str(r["id"]): r["text"] for r in read_jsonl(pilot / "sample.jsonl")}
    mentions = agreed_mentions(texts, [read_answered_spans(f) for f in files], MentionPrior(initial.schema_))
    return glossary_guideline(initial, mentions[:max_mentions]) if mentions else None
