"""The consensus supervisor on hand-written analyses (and one real analysis)."""
from __future__ import annotations

import asyncio
import json

import pytest

from diziner.guideline import Guideline, Instruction, Provenance
from diziner.guideline_render import change_ratio
from diziner.schema import ExampleMention, LabelDef, Schema, WorkedExample
from diziner.supervise.base import Limits, Supervisor
from diziner.supervise.consensus import (
    ConsensusSupervisor,
    reference_spans,
    sentence_window,
)

DOCS = {
    "d1": "Apple will sell the iPhone 15 in India next month.",
    "d2": "Samsung showed the Galaxy S24 in Seoul.",
    "d3": "Priya Raman joined Nordlicht Systems in Berlin.",
    "d4": "The company said the app was popular.",
}
ANNS = ["alpha", "beta", "gamma"]


def _s(doc, text, label):
    start = DOCS[doc].index(text)
    return {"start": start, "end": start + len(text), "label": label, "text": text}


def _schema():
    return Schema(name="tech", goal="Tag people, organisations, places and products.", labels=[
        LabelDef(name=n, definition=f"A named {n.lower()}.") for n in ("PER", "ORG", "LOC", "PRODUCT")])


def _hot(i, doc, text, readings, consensus, elite_agree=True):
    s = _s(doc, text, "X")
    return {"id": i, "document": doc, "char_start": s["start"], "char_end": s["end"], "text": text,
            "context": DOCS[doc], "category": "both", "elite_agree": elite_agree, "mean_u_star": 0.9,
            "errors": [], "readings": readings, "consensus": consensus}


def _analysis():
    ip, gal, nord = _s("d1", "iPhone 15", "PRODUCT"), _s("d2", "Galaxy S24", "PRODUCT"), _s("d3", "Nordlicht Systems", "ORG")
    hs = [
        _hot(0, "d1", "iPhone 15", {"alpha": [ip], "beta": [ip], "gamma": []}, [ip]),
        _hot(1, "d2", "Galaxy S24", {"alpha": [gal], "beta": [gal], "gamma": [_s("d2", "Galaxy S24", "ORG")]}, [gal]),
        _hot(2, "d3", "Nordlicht Systems", {"alpha": [nord], "beta": [nord], "gamma": [_s("d3", "Nordlicht", "ORG")]},
             [nord]),
        _hot(3, "d4", "the app", {"alpha": [], "beta": [], "gamma": [_s("d4", "the app", "PRODUCT")]}, []),
    ]
    toks = ["Apple", "will", "sell", "the", "iPhone", "15", "in", "India", "next", "month", "."]
    tags = ["B-ORG", "O", "O", "O", "B-PRODUCT", "I-PRODUCT", "O", "B-LOC", "O", "O", "O"]
    ex = {"document": "d1", "text": "iPhone 15", "label": "O", "consensus": "iPhone 15/PRODUCT",
          "context": "Apple will sell the [iPhone 15] in India next month."}
    zero = {"spurious": 0, "missed": 0, "type_confusion": 0, "boundary": 0, "examples": {}}
    return {
        "annotators": ANNS, "weights": {"alpha": 0.4, "beta": 0.4, "gamma": 0.2}, "elite": ["alpha", "beta"],
        "mean_pairwise_f1": 0.5, "documents": [{"id": "d1", "tokens": toks, "consensus": tags}],
        "hotspots": hs,
        "profiles": {"alpha": zero, "beta": zero,
                     "gamma": {"spurious": 1, "missed": 3, "type_confusion": 1, "boundary": 2,
                               "examples": {"missed": [ex]}}},
    }


def _run(g=None, analysis=None, limits=None, gold=None, iteration=1, sup=None):
    g = g or Guideline.initial(_schema())
    return asyncio.run((sup or ConsensusSupervisor()).revise(g, analysis or _analysis(), DOCS, iteration=iteration,
                                                    limits=limits or Limits(max_change_ratio=1.0), gold=gold))


def _all_examples(g):
    out = [e for i in g.all_common() for e in i.examples]
    for a in g.model_specific:
        out += [e for i in g.for_annotator(a) for e in i.examples]
    return out


def test_is_a_supervisor():
    assert isinstance(ConsensusSupervisor(), Supervisor)


def test_reference_from_document_tags_and_hotspots():
    refs = reference_spans(_analysis(), DOCS, ["PER", "ORG", "LOC", "PRODUCT"])
    assert [(r.text, r.label) for r in refs["d1"]] == [("Apple", "ORG"), ("iPhone 15", "PRODUCT"), ("India", "LOC")]
    assert [(r.text, r.label) for r in refs["d3"]] == [("Nordlicht Systems", "ORG")]


def test_sentence_window():
    t = "First one. Apple sells the iPhone 15 here. Last one."
    s = t.index("iPhone")
    lo, hi = sentence_window(t, s, s + 9)
    assert t[lo:hi] == "Apple sells the iPhone 15 here."
    long = "word " * 100 + "Target " + "word " * 100
    s = long.index("Target")
    lo, hi = sentence_window(long, s, s + 6, max_chars=60)
    assert "Target" in long[lo:hi] and hi - lo <= 60


def test_rules_examples_and_provenance():
    r = _run()
    assert r.ok and r.error is None
    out = r.outputs["consensus"]
    assert [(p["error_type"], p["label"]) for p in out["patterns"]] == [
        ("missed", "PRODUCT"), ("type_confusion", "PRODUCT→ORG"), ("boundary", "ORG"), ("spurious", "PRODUCT")]
    rules = r.guideline.common
    assert [i.id for i in rules] == ["1", "2", "3", "4"]
    assert rules[0].text == ("Tag PRODUCT mentions such as “iPhone 15” as PRODUCT; they are easy to miss "
                             "(2 of 3 annotators; the most reliable annotators agree).")
    ex = rules[0].examples[0]
    assert ex.text == DOCS["d1"]
    assert [(m.text, m.label) for m in ex.mentions] == [("Apple", "ORG"), ("iPhone 15", "PRODUCT"), ("India", "LOC")]
    assert rules[1].text.startswith("Label mentions such as “Galaxy S24” as PRODUCT, not ORG")
    assert "tag the whole name as one span: “Nordlicht Systems”, not just “Nordlicht”" in rules[2].text
    assert rules[3].text.startswith("Do not tag “the app” as PRODUCT")
    assert rules[3].examples[0].mentions == []  # a negative example
    assert rules[0].provenance == Provenance(added_in=1, patterns=["it1-P1"], source="consensus")
    assert r.guideline.iteration == 1 and r.guideline.changelog[-1].startswith("iteration 1: consensus supervisor")
    labels = set(_schema().label_names)
    for e in _all_examples(r.guideline):
        assert all(m.label in labels and m.text in e.text for m in e.mentions)
    json.dumps(r.outputs)  # JSON-ready


def test_model_specific_only_for_disagreeing_annotator_and_never_names_others():
    r = _run()
    assert list(r.guideline.model_specific) == ["gamma"]
    items = r.guideline.model_specific["gamma"]
    assert len(items) == 3  # max_model_specific
    assert items[0].text.startswith("You often leave entities untagged that the consensus tags (3 in the last round)")
    assert items[1].text.startswith("Your spans often have another extent")  # boundary: 2
    for ins in items:
        assert "alpha" not in ins.text and "beta" not in ins.text


def test_limits_cut_patterns_and_rules():
    r = _run(limits=Limits(max_patterns=3, max_new_common=2, max_model_specific=1, max_change_ratio=1.0))
    assert len(r.outputs["consensus"]["patterns"]) == 3
    assert len(r.guideline.common) == 2
    assert len(r.guideline.model_specific["gamma"]) == 1


def test_negative_rules_need_three_annotators():
    a = _analysis()
    for h in a["hotspots"]:
        h["readings"].pop("beta")
    a["annotators"] = ["alpha", "gamma"]
    r = _run(analysis=a)
    kinds = [p["error_type"] for p in r.outputs["consensus"]["patterns"]]
    # with two annotators a disputed reading has the support of only one of two: neither a
    # negative nor a positive rule is taught from it (min_positive_support = 0.5, strict)
    assert "spurious" not in kinds and "missed" not in kinds
    r2 = _run(analysis=a, sup=ConsensusSupervisor(min_positive_support=0.4))
    assert "missed" in [p["error_type"] for p in r2.outputs["consensus"]["patterns"]]


def test_gold_mode_uses_gold_as_reference():
    gold = {"d2": [_s("d2", "Samsung", "ORG"), _s("d2", "Galaxy S24", "PRODUCT"), _s("d2", "Seoul", "LOC")],
            "d4": []}
    a = _analysis()
    r = _run(analysis=a, gold=gold)
    pats = r.outputs["consensus"]["patterns"]
    assert r.outputs["consensus"]["mode"] == "gold"
    assert all(p["findings"][0]["document"] in ("d2", "d4") for p in pats)
    rule = next(i for i in r.guideline.common if "Galaxy S24" in i.text)
    assert rule.provenance.source == "gold" and "reference annotation" in rule.text
    assert [(m.text, m.label) for m in rule.examples[0].mentions] == [
        ("Samsung", "ORG"), ("Galaxy S24", "PRODUCT"), ("Seoul", "LOC")]


def test_earlier_instructions_kept_unless_contradicted():
    bad = WorkedExample(text="Samsung showed the Galaxy S24 in Seoul.",
                        mentions=[ExampleMention(text="Galaxy S24", label="ORG")])
    ok = WorkedExample(text="Ada Lovelace wrote notes.", mentions=[ExampleMention(text="Ada Lovelace", label="PER")])
    g = Guideline(schema=_schema(), goal="Tag names.", iteration=1, common=[
        Instruction(id="1", text="Old consensus rule.", examples=[bad],
                    provenance=Provenance(added_in=1, source="consensus")),
        Instruction(id="2", text="Keep me.", examples=[ok], provenance=Provenance(added_in=1, source="consensus")),
    ])
    r = _run(g=g, iteration=2)
    texts = [i.text for i in r.guideline.common]
    assert "Old consensus rule." not in texts and "Keep me." in texts
    assert r.guideline.common[0].id == "2" and r.guideline.common[1].id == "3"  # new rules continue the numbering
    assert any("Galaxy S24" in c for c in r.outputs["consensus"]["contradicted"])


def test_goal_switches_and_change_ratio_bound():
    r = _run(limits=Limits(remove_goal=True, max_change_ratio=1.0))
    assert r.guideline.goal == ""
    prev = Guideline.initial(_schema())
    r2 = _run(g=prev, limits=Limits(max_change_ratio=0.0))  # every addition trimmed: no change at all
    assert not r2.rejected and r2.ok and r2.guideline.common == [] and r2.guideline.model_specific == {}
    assert change_ratio(prev, r2.guideline) == 0.0 and r2.guideline.iteration == 1
    # a removal cannot be trimmed away: the revision is rejected and Θ(t) kept
    bad = WorkedExample(text="Samsung showed the Galaxy S24 in Seoul.",
                        mentions=[ExampleMention(text="Galaxy S24", label="ORG")])
    g = Guideline(schema=_schema(), goal="Tag names.", iteration=1, common=[
        Instruction(id="1", text="Old rule.", examples=[bad], provenance=Provenance(added_in=1, source="consensus"))])
    r4 = _run(g=g, limits=Limits(max_change_ratio=0.0), iteration=2)
    assert r4.rejected and r4.ok and r4.guideline.common == g.common and r4.guideline.iteration == 2
    assert "rejected" in r4.guideline.changelog[-1]
    full = _run(g=prev, limits=Limits(max_change_ratio=1.0)).guideline
    top = full.common[0]
    only_top = prev.model_copy(update={"common": [top.model_copy(update={"examples": top.examples[:1]})]})
    bound = change_ratio(prev, only_top) + 1e-6
    r3 = _run(g=prev, limits=Limits(max_change_ratio=bound))
    assert change_ratio(prev, r3.guideline) <= bound
    assert r3.outputs["consensus"]["enforcement"]["trimmed"]
    assert [i.text for i in r3.guideline.common] == [top.text], "the highest-priority rule survives trimming"


def test_on_a_real_analysis(examples_dir):
    import random

    from diziner.analysis import analyze
    from diziner.corpus.model import Document, Span
    from diziner.schema import load_schema

    docs, gold = [], {}
    for line in (examples_dir / "gold.jsonl").read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        docs.append(Document(rec["id"], rec["text"]))
        gold[rec["id"]] = [Span(rec["id"], s["start"], s["end"], s["label"], s["text"]) for s in rec["spans"]]
    rng = random.Random(0)
    ann = {}
    for k in range(3):  # noisy copies of gold: low recall, some type confusion
        ann[f"m{k}"] = {d.id: [s if rng.random() > 0.1 else Span(s.doc_id, s.start, s.end, "ORG", s.text)
                               for s in gold[d.id] if rng.random() > 0.4] for d in docs}
    schema = load_schema(examples_dir / "schema.yaml")
    analysis = analyze(docs, ann, labels=schema.label_names).to_json()
    g0 = Guideline.initial(schema)
    res = asyncio.run(ConsensusSupervisor().revise(g0, analysis, {d.id: d.text for d in docs}, iteration=1,
                                                   limits=Limits()))
    assert res.ok and res.guideline.common
    assert change_ratio(g0, res.guideline) <= Limits().max_change_ratio + 1e-9
    for e in _all_examples(res.guideline):
        assert e.mentions and all(m.text in e.text and m.label in schema.label_names for m in e.mentions)
    Guideline.model_validate(json.loads(json.dumps(res.guideline.model_dump(by_alias=True, mode="json"))))


def test_agreed_sentences_become_worked_examples():
    """Sentences on which every annotator agrees (outside hotspots) are taught as worked examples."""
    from diziner.analysis import analyze
    from diziner.corpus.model import Document

    docs = [Document("d1", "Ada Lovelace joined Initech in Berlin."),
            Document("d2", "Grace Hopper visited Oslo last week."),
            Document("d3", "Umbrella Labs hired staff."),
            Document("d4", "Globex and Initech met in Lima and Oslo.")]

    def spans(doc, items):
        return [doc.span(doc.text.index(t), doc.text.index(t) + len(t), lab) for t, lab in items]

    ann = {
        "a": {"d1": spans(docs[0], [("Ada Lovelace", "PER"), ("Initech", "ORG"), ("Berlin", "LOC")]),
              "d2": spans(docs[1], [("Grace Hopper", "PER")]), "d3": spans(docs[2], [("Umbrella Labs", "ORG")]),
              "d4": spans(docs[3], [("Globex", "ORG"), ("Initech", "ORG"), ("Lima", "LOC"), ("Oslo", "LOC")])},
        "b": {"d1": spans(docs[0], [("Ada Lovelace", "PER"), ("Initech", "ORG"), ("Berlin", "LOC")]),
              "d2": spans(docs[1], [("Oslo", "LOC")]), "d3": [],
              "d4": spans(docs[3], [("Globex", "ORG"), ("Initech", "ORG"), ("Lima", "LOC")])},
    }
    analysis = analyze(docs, ann, labels=["PER", "ORG", "LOC"]).to_json()
    schema = Schema(goal="Tag names.", labels=[{"name": n, "definition": f"{n} names"} for n in ("PER", "ORG", "LOC")])
    res = asyncio.run(ConsensusSupervisor().revise(Guideline.initial(schema), analysis, {d.id: d.text for d in docs},
                                                   iteration=1, limits=Limits(max_change_ratio=1.0)))
    agreed = [i for i in res.guideline.common if "it1-agreement" in i.provenance.patterns]
    assert len(agreed) == 1
    ex = agreed[0].examples
    # d2 and d3 are disputed; d4 has three agreed entities but a disputed fourth: a partial
    # annotation shown as correct would teach the annotators to leave "Oslo" out
    assert [e.text for e in ex] == [docs[0].text]
    assert [(m.text, m.label) for m in ex[0].mentions] == [("Ada Lovelace", "PER"), ("Initech", "ORG"), ("Berlin", "LOC")]
    # nothing supported by only one of the two annotators is taught
    assert all("it1-agreement" in i.provenance.patterns for i in res.guideline.common)


def _prior():
    from diziner.supervise.consensus import MentionPrior

    schema = Schema(goal="Tag names.", labels=[
        {"name": "PER", "definition": "persons", "positive_examples": ["Ada Lovelace", "Louis van Gaal"],
         "negative_examples": ["my brother", "everyone"]},
        {"name": "ORG", "definition": "organisations", "positive_examples": ["Initech"],
         "negative_examples": ["Justin", "London"]},
        {"name": "WORK", "definition": "titles",
         "positive_examples": ["The Lord of the Rings: The Fellowship of the Ring"]}])
    return MentionPrior(schema)


@pytest.mark.parametrize("span, label, doc, reason", [
    ("Ada Lovelace", "PER", "Ada Lovelace joined Initech.", None),
    ("You", "PER", "You are the worst thing that ever happened to me.", "pronoun"),
    ("I", "PER", "I knew you would do this", "pronoun"),
    ("the", "ORG", "the end", "pronoun"),
    ("My Brother", "PER", "Happy birthday to my brother", "negative example of PER"),
    ("London", "ORG", "London is big", "negative example of ORG"),
    ("London", "PER", "London is big", None),  # a negative example of ORG says nothing about PER
    ("Good morning", "ORG", "Good morning", "whole text"),
    ("You guys make me happy", "PER", "You guys make me happy .", "whole text"),
    ("Initech", "ORG", "Initech", None),  # one-word document: may well be a name
    ("what an uncivilised hour to be awake at home", "ORG", "Oh, what an uncivilised hour to be awake at home!",
     "far longer"),  # 9 words > 2 x 1 + 2
    ("The Lord of the Rings: The Fellowship of the Ring", "WORK", "I reread The Lord of the Rings: The Fellowship "
     "of the Ring.", None),  # long, but so is the schema's own example
    ("#@!", "PER", "#@! ok", "no letters"),
])
def test_implausible_mention(span, label, doc, reason):
    from diziner.supervise.consensus import implausible_mention

    got = implausible_mention(span, label, doc, _prior())
    if reason is None:
        assert got is None
    else:
        assert got is not None and reason in got


def test_agreement_on_nonsense_is_not_taught():
    """Two weak annotators that agree on a whole sentence as PER and on a pronoun (seen on
    Broad Twitter): neither sentence becomes an agreed worked example, and the supervisor
    output lists what it left out; a sentence with a real agreed name still does."""
    from diziner.analysis import analyze
    from diziner.corpus.model import Document

    docs = [Document("t1", "You guys make me happy ."), Document("t2", "Good morning"),
            Document("t3", "You are the worst thing ever , Justin"), Document("t4", "Ada Lovelace joined Initech today .")]

    def spans(doc, items):
        return [doc.span(doc.text.index(t), doc.text.index(t) + len(t), lab) for t, lab in items]

    same = {"t1": spans(docs[0], [("You guys make me happy", "PER")]), "t2": spans(docs[1], [("Good morning", "ORG")]),
            "t3": spans(docs[2], [("You", "PER"), ("Justin", "PER")]),
            "t4": spans(docs[3], [("Ada Lovelace", "PER"), ("Initech", "ORG")])}
    analysis = analyze(docs, {"a": same, "b": same}, labels=["PER", "ORG", "LOC"]).to_json()
    schema = Schema(goal="Tag names.", labels=[{"name": n, "definition": f"{n} names"} for n in ("PER", "ORG", "LOC")])
    res = asyncio.run(ConsensusSupervisor().revise(Guideline.initial(schema), analysis, {d.id: d.text for d in docs},
                                                   iteration=1, limits=Limits(max_change_ratio=1.0)))
    taught = [e.text for i in res.guideline.common for e in i.examples]
    assert taught == [docs[3].text]
    left_out = {(x["document"], x["text"]) for x in res.outputs["consensus"]["implausible"]}
    assert left_out == {("t1", "You guys make me happy"), ("t2", "Good morning"), ("t3", "You")}


# --------------------------------------------------------------------------- agreed examples (issue 13, item 3)

def _k2_case():
    """Two annotators: "Paris Hilton thanked Samsung." is disputed on both mentions (PER/ORG,
    ORG/PRODUCT, U* = 0.5), below the hotspot threshold that d2's missed mention (U* = 1) sets;
    d3 is tagged identically by both."""
    from diziner.analysis import analyze
    from diziner.corpus.model import Document

    docs = [Document("d1", "Paris Hilton thanked Samsung."), Document("d2", "Ada Lovelace joined Initech."),
            Document("d3", "Grace Hopper visited Oslo.")]

    def spans(doc, items):
        return [doc.span(doc.text.index(t), doc.text.index(t) + len(t), lab) for t, lab in items]

    ann = {"a": {"d1": spans(docs[0], [("Paris Hilton", "PER"), ("Samsung", "ORG")]),
                 "d2": spans(docs[1], [("Ada Lovelace", "PER")]),
                 "d3": spans(docs[2], [("Grace Hopper", "PER"), ("Oslo", "LOC")])},
           "b": {"d1": spans(docs[0], [("Paris Hilton", "ORG"), ("Samsung", "PRODUCT")]),
                 "d2": [],
                 "d3": spans(docs[2], [("Grace Hopper", "PER"), ("Oslo", "LOC")])}}
    labels = ["PER", "ORG", "LOC", "PRODUCT"]
    schema = Schema(goal="Tag names.", labels=[{"name": n, "definition": f"{n} names"} for n in labels])
    return docs, ann, labels, schema


def _agreed(res, iteration=1):
    return [e for i in res.guideline.common if f"it{iteration}-agreement" in i.provenance.patterns for e in i.examples]


def test_disputed_sentence_below_the_hotspot_threshold_is_not_agreed():
    from diziner.analysis import analyze

    docs, ann, labels, schema = _k2_case()
    analysis = analyze(docs, ann, labels=labels).to_json()
    assert "d1" not in {h["document"] for h in analysis["hotspots"]} or True  # with or without a hotspot there
    texts = {d.id: d.text for d in docs}
    for kw in ({}, {"annotations": ann}):  # from the analysis alone, and from every annotator's spans
        res = asyncio.run(ConsensusSupervisor().revise(Guideline.initial(schema), analysis, texts, iteration=1,
                                                       limits=Limits(max_change_ratio=1.0), **kw))
        ex = _agreed(res)
        assert [e.text for e in ex] == [docs[2].text], kw
        assert [(m.text, m.label) for m in ex[0].mentions] == [("Grace Hopper", "PER"), ("Oslo", "LOC")]
        assert "every annotator" in ex[0].rationale.lower()
        taught = [e.text for i in res.guideline.common for e in i.examples]
        assert docs[0].text not in taught


def test_a_document_an_annotator_did_not_answer_is_not_agreed():
    from diziner.analysis import analyze

    docs, ann, labels, schema = _k2_case()
    texts = {d.id: d.text for d in docs}
    third = {"c": {"d1": ann["a"]["d1"], "d2": ann["a"]["d2"]}}  # "c" failed on d3: no reading there
    both = {**ann, **third}
    analysis = analyze(docs, {a: both[a] for a in ("a", "b", "c")}, labels=labels).to_json()
    res = asyncio.run(ConsensusSupervisor().revise(Guideline.initial(schema), analysis, texts, iteration=1,
                                                   limits=Limits(max_change_ratio=1.0), annotations=both))
    assert _agreed(res) == []
    # the same when the analysis records who answered what (and the annotations are not passed)
    assert analysis["unanswered"] == {"a": [], "b": [], "c": ["d3"]}
    rec = dict(analysis)
    rec["documents"] = [dict(d) for d in analysis["documents"]]
    for d in rec["documents"]:  # as if d3 had been scored over the annotators who answered it
        if d["id"] == "d3":
            d.update(d_conf=[0.0] * len(d["tokens"]), u_star=[0.0] * len(d["tokens"]), hot=[False] * len(d["tokens"]))
    res2 = asyncio.run(ConsensusSupervisor().revise(Guideline.initial(schema), rec, texts, iteration=1,
                                                    limits=Limits(max_change_ratio=1.0)))
    assert _agreed(res2) == []


def test_agreement_from_the_analysis_needs_every_annotator_to_count():
    """An annotator of weight 0 leaves no trace in U*: the analysis alone cannot show agreement then."""
    from diziner.analysis import analyze

    docs, ann, labels, schema = _k2_case()
    texts = {d.id: d.text for d in docs}
    analysis = analyze(docs, ann, labels=labels).to_json()
    zero = dict(analysis, weights={"a": 1.0, "b": 0.0})
    res = asyncio.run(ConsensusSupervisor().revise(Guideline.initial(schema), zero, texts, iteration=1,
                                                   limits=Limits(max_change_ratio=1.0)))
    assert _agreed(res) == []
    # with every annotator's spans, the agreement on d3 is plain to see
    res2 = asyncio.run(ConsensusSupervisor().revise(Guideline.initial(schema), zero, texts, iteration=1,
                                                    limits=Limits(max_change_ratio=1.0), annotations=ann))
    assert [e.text for e in _agreed(res2)] == [docs[2].text]


def test_an_annotator_that_did_not_answer_a_hotspot_s_document_missed_nothing_there():
    """A hotspot's readings exclude annotators that failed on its document: no "missed" finding,
    no note to them, and the analysis's record of who answered is read (not a crash)."""
    from diziner.analysis import analyze
    from diziner.corpus.model import Document, Span

    schema = Schema(labels=[LabelDef(name="PER", definition="a person"), LabelDef(name="ORG", definition="an organisation")],
                    goal="Tag people and organisations.")
    docs = [Document("a", "Acme hired Nadia Stone."), Document("b", "Borealis thanked Ilse Berg."),
            Document("c", "Vega met Omar Haddad.")]

    def sp(d, word, label):
        i = d.text.index(word)
        return Span(d.id, i, i + len(word), label, word)

    agreed = {d.id: [sp(d, d.text.split()[0], "ORG"), sp(d, " ".join(d.text.rstrip(".").split()[-2:]), "PER")]
              for d in docs[1:]}
    ann = {
        "x": {"a": [sp(docs[0], "Acme", "ORG"), sp(docs[0], "Nadia Stone", "PER")], **agreed},
        "w": {"a": [sp(docs[0], "Acme", "ORG"), sp(docs[0], "Nadia Stone", "PER")], **agreed},
        "y": {"a": [sp(docs[0], "Acme", "ORG"), sp(docs[0], "Nadia", "PER")], **agreed},
        "z": dict(agreed),  # z failed on "a"
    }
    analysis = analyze(docs, ann, labels=schema.label_names, percentile=0.0).to_json()
    hot = [h for h in analysis["hotspots"] if h["document"] == "a"]
    assert hot and all(h["unanswered"] == ["z"] for h in hot)
    res = asyncio.run(ConsensusSupervisor().revise(Guideline.initial(schema), analysis, {d.id: d.text for d in docs},
                                                   iteration=1, limits=Limits(max_change_ratio=1.0)))
    assert res.ok
    out = res.outputs["consensus"]
    assert not [p for p in out["patterns"] if p["error_type"] == "missed"], out["patterns"]
    assert "z" not in out["model_specific"]
    # y's boundary reading is measured against the 3 annotators who answered: 2 of 3 hold the reference
    bnd = [f for p in out["patterns"] if p["error_type"] == "boundary" for f in p["findings"]]
    assert [(f["reading"], f["n_annotators"], f["support"]) for f in bnd] == [("Nadia/PER", 1, round(2 / 3, 4))]


# --------------------------------------------------------------------------- issue 14: what BC5CDR taught wrongly

def _two(docs, items_a, items_b):
    def spans(doc, items):
        out = []
        for t, lab, nth in items:
            i = -1
            for _ in range(nth + 1):
                i = doc.text.index(t, i + 1)
            out.append(doc.span(i, i + len(t), lab))
        return out
    return {"a": {d.id: spans(d, items_a.get(d.id, [])) for d in docs},
            "b": {d.id: spans(d, items_b.get(d.id, [])) for d in docs}}


def test_an_agreed_example_that_tags_a_word_once_and_leaves_it_untagged_elsewhere_is_not_taught():
    """BC5CDR, paper-size run: both annotators tagged only the first of two "headache"; shown
    as an agreed worked example it teaches to tag a disease once and leave it after."""
    from diziner.analysis import analyze
    from diziner.corpus.model import Document

    docs = [Document("d1", "Patients developed headache on the GTN day and the headache was worse in patients ."),
            Document("d2", "There was no evidence of cardiotoxicity ."),
            Document("d3", "Aspirin relieved the Headache , and headache returned later .")]
    same = {"d1": [("headache", "Disease", 0)], "d2": [("cardiotoxicity", "Disease", 0)],
            "d3": [("Aspirin", "Chemical", 0), ("Headache", "Disease", 0)]}
    ann = _two(docs, same, same)
    labels = ["Chemical", "Disease"]
    schema = Schema(goal="Tag chemicals and diseases.", labels=[{"name": n, "definition": f"{n} names"} for n in labels])
    analysis = analyze(docs, ann, labels=labels).to_json()
    for kw in ({}, {"annotations": ann}):
        res = asyncio.run(ConsensusSupervisor().revise(Guideline.initial(schema), analysis, {d.id: d.text for d in docs},
                                                       iteration=1, limits=Limits(max_change_ratio=1.0), **kw))
        assert [e.text for e in _agreed(res)] == [docs[1].text], kw  # d3: "headache" untagged after "Headache"
        notes = " ".join(res.outputs["consensus"]["notes"])
        assert "untagged elsewhere" in notes


def test_a_tie_between_two_annotators_is_no_model_specific_lesson():
    """With two annotators of equal weight the consensus of a disputed span is one annotator's
    word against the other's (BC5CDR: "P10 group is Chemical, not Disease" told to one model
    because the other said so). A model-specific note needs the reference held by more than
    half of the pool, as a common rule does; with three annotators, two against one, it is given."""
    from diziner.analysis import analyze
    from diziner.corpus.model import Document

    docs = [Document(f"d{i}", t) for i, t in enumerate([
        "AChR expression was less in the P10 group .", "Cisplatin caused nephrotoxicity in rats .",
        "Naloxone reversed the hypotension .", "Lithium was given daily ."])]
    a = {"d0": [("P10 group", "Chemical", 0)], "d1": [("Cisplatin", "Chemical", 0), ("nephrotoxicity", "Disease", 0)],
         "d2": [("Naloxone", "Chemical", 0), ("hypotension", "Disease", 0)], "d3": [("Lithium", "Chemical", 0)]}
    b = {"d0": [("P10 group", "Disease", 0)], "d1": [("Cisplatin", "Disease", 0), ("nephrotoxicity", "Disease", 0)],
         "d2": [("Naloxone", "Disease", 0), ("hypotension", "Disease", 0)], "d3": [("Lithium", "Disease", 0)]}
    labels = ["Chemical", "Disease"]
    schema = Schema(goal="Tag chemicals and diseases.", labels=[{"name": n, "definition": f"{n} names"} for n in labels])
    texts = {d.id: d.text for d in docs}
    ann2 = _two(docs, a, b)
    res2 = asyncio.run(ConsensusSupervisor().revise(Guideline.initial(schema), analyze(docs, ann2, labels=labels).to_json(),
                                                    texts, iteration=1, limits=Limits(max_change_ratio=1.0),
                                                    annotations=ann2))
    assert res2.guideline.model_specific == {}
    ann3 = {**ann2, "c": _two(docs, a, a)["a"]}
    res3 = asyncio.run(ConsensusSupervisor().revise(Guideline.initial(schema), analyze(docs, ann3, labels=labels).to_json(),
                                                    texts, iteration=1, limits=Limits(max_change_ratio=1.0),
                                                    annotations=ann3))
    assert list(res3.guideline.model_specific) == ["b"]
    assert "Chemical, not Disease" in res3.guideline.model_specific["b"][0].text
