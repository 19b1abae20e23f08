"""The HTML report without a browser: loading, escaping, links, ledger sums, overwrite policy, CLI."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_report_fixtures import EVIL, make_analysis_folder, make_run

from diziner.cli import main
from diziner.errors import InputError
from diziner.report import build_report, load_report_data, render_report
from diziner.report.charts import heatmap, line_chart, stacked_bars
from diziner.report.data import (
    ledger_table,
    link_rules_to_hotspots,
    per_annotator_agreement,
)
from diziner.report.fragments import fmt_cost, highlight, word_diff
from diziner.report.html import json_for_script


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("r") / "run")


def _no_external_refs(html: str) -> None:
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html), "external reference in report"
    assert "@import" not in html and "url(" not in html


def test_run_report_sections_and_escaping(run_dir: Path, tmp_path: Path) -> None:
    out = build_report(run_dir, tmp_path / "r.html")
    html = out.read_text(encoding="utf-8")
    for el_id in ("summary", "charts", "chart-agreement", "chart-hotspots", "chart-f1", "agreement", "hotspots",
                  "guidelines", "guideline-1", "ledger", "report-data", "metrics-table"):
        assert f'id="{el_id}"' in html, el_id
    _no_external_refs(html)
    # exactly two <script> elements: the JSON data and our own code
    assert html.count("<script") == 2
    assert "<script>window.__pwned" not in html and "<img src=x" not in html
    import html as html_mod

    visible = html_mod.unescape(re.sub(r"<[^>]+>", "", html))  # the text a reader sees
    assert "<script>window.__pwned=1</script>" in visible
    assert '<img src=x onerror="window.__pwned=2">' in visible
    # schema text with markup is escaped too
    assert "the &lt;b&gt;board&lt;/b&gt;" in html
    # the embedded data parses and has no raw "<"
    m = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', html, re.DOTALL)
    assert m and "<" not in m.group(1)
    data = json.loads(m.group(1))
    assert [it["key"] for it in data["iterations"]] == ["0", "1"]
    assert data["default_iteration"] == "1"
    # unknown cost stays unknown
    assert "unknown (7 calls)" in html  # claude: 8 ok calls, 1 cache hit; the failed call is not priced


def test_analysis_folder_report(tmp_path: Path) -> None:
    folder = make_analysis_folder(tmp_path / "an")
    out = build_report(folder)
    assert out == folder / "report.html"
    html = out.read_text(encoding="utf-8")
    assert 'id="hotspots"' in html and 'id="agreement"' in html
    assert 'id="guidelines"' not in html and 'id="ledger"' not in html
    # without document texts the readings are shown as mention chips
    assert 'class="chip"' in html
    _no_external_refs(html)
    # an analysis.json file path works too
    assert "hotspot" in render_report(load_report_data(folder / "analysis.json"))


def test_rule_links_to_hotspots(run_dir: Path) -> None:
    data = load_report_data(run_dir)
    links = link_rules_to_hotspots(data)
    # P1 is a supervisor pattern of iteration 0 that lists hotspots 0 and "H1"
    assert [(x["iteration"], x["index"]) for x in links[("1", "common", "1")]] == [(0, 0), (0, 1)]
    l11 = links[("1", "common", "1.1")]
    assert (l11[0]["pattern"], l11[0]["index"]) == ("H0", 0)
    cats = [h["category"] for h in data.iterations[0].hotspots]
    assert sorted(x["index"] for x in l11 if x["pattern"] == "elite_split") == [
        i for i, c in enumerate(cats) if c == "elite_split"]
    assert l11[-1] == {"pattern": "no such pattern", "iteration": 0, "index": None, "anchor": None}
    assert links[("1", "llama", "L1")][0]["anchor"] == "hs-0-1"
    html = render_report(data)
    assert 'href="#hs-0-1"' in html and 'id="hs-0-1"' in html
    assert 'id="rule-1-common-1_1"' in html
    # back links from the hotspot to the rules it motivated
    assert 'href="#rule-1-llama-L1"' in html


def test_ledger_table_hand_computed() -> None:
    recs = [
        {"annotator": "a", "iteration": 0, "tokens_in": 10, "tokens_out": 2, "latency_s": 1.0, "cached": False,
         "cost_usd": 0.5, "ok": True},
        {"annotator": "a", "iteration": 0, "tokens_in": 10, "tokens_out": 2, "latency_s": 0.0, "cached": True,
         "cost_usd": 0.0, "ok": True},
        {"annotator": "b", "iteration": 0, "tokens_in": 5, "tokens_out": 1, "latency_s": 2.0, "cached": False,
         "cost_usd": None, "ok": True},
        {"annotator": "b", "iteration": 1, "tokens_in": 0, "tokens_out": 0, "latency_s": 9.0, "cached": False,
         "cost_usd": None, "ok": False, "reason": "timeout"},
    ]
    t = ledger_table(recs)
    tot = t["total"]
    assert (tot["calls"], tot["ok"], tot["failed"], tot["cached"]) == (4, 3, 1, 1)
    assert (tot["tokens_in"], tot["tokens_out"], tot["latency_s"]) == (25, 5, 12.0)
    assert tot["cost_usd"] == 0.5 and tot["unknown_cost_calls"] == 1
    by = {r["annotator"]: r for r in t["by_annotator"]}
    assert by["a"]["unknown_cost_calls"] == 0 and fmt_cost(by["a"]) == "$0.5000"
    assert fmt_cost(by["b"]) == "unknown (1 call)"
    assert fmt_cost(tot) == "$0.5000 + unknown (1 call)"
    assert [(r["annotator"], r["iteration"]) for r in t["rows"]] == [("a", "0"), ("b", "0"), ("b", "1")]


def test_per_annotator_agreement() -> None:
    a = {"annotators": ["x", "y", "z"], "pairwise_f1": {"x": {"y": 0.5, "z": 1.0}, "y": {"x": 0.5, "z": 0.0},
                                                        "z": {"x": 1.0, "y": 0.0}}}
    assert per_annotator_agreement(a) == {"x": 0.75, "y": 0.25, "z": 0.5}


def test_highlight_marks_and_escapes() -> None:
    text = "a <b> & c"
    out = str(highlight(text, [{"start": 2, "end": 5, "label": "X<"}], hot=(2, 5)))
    assert out == 'a <span class="hot"><mark class="ent" title="X&lt;">&lt;b&gt;</mark></span><sup class="lab">X&lt;</sup> &amp; c'
    # nested spans: the shared piece is marked twice, each label appears once at its end
    out = str(highlight("New York City", [{"start": 0, "end": 13, "label": "LOC"}, {"start": 0, "end": 8, "label": "GPE"}]))
    assert out.count("<sup") == 2 and out.count('<mark class="ent" title="LOC">') == 2
    # out-of-range spans are ignored, never crash
    assert "mark" not in str(highlight("abc", [{"start": 2, "end": 9, "label": "X"}, {"start": "0"}]))


def test_word_diff() -> None:
    assert str(word_diff("tag the <name>", "tag a <name>")) == "tag <del>the</del><ins>a</ins> &lt;name&gt;"


@settings(max_examples=60, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(),
                    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
                    max_leaves=10))
def test_json_for_script_round_trips_and_is_inert(obj) -> None:
    s = str(json_for_script(obj))
    assert "<" not in s and ">" not in s and "&" not in s
    assert json.loads(s) == obj


def test_charts_escape_labels() -> None:
    evil = "<script>x</script>"
    for svg in (line_chart({evil: [(0, 0.5), (1, 0.7)]}, evil), stacked_bars([(evil, {evil: 2})], evil),
                heatmap([evil, "b"], [[1.0, 0.5], [0.5, None]], evil)):
        assert "<script" not in svg and "&lt;script&gt;" in svg
        assert svg.startswith("<svg") and svg.endswith("</svg>")


def test_overwrite_policy(run_dir: Path, tmp_path: Path) -> None:
    user = tmp_path / "mine.html"
    user.write_text("<html>my page</html>", encoding="utf-8")
    with pytest.raises(InputError, match="not a diziner report"):
        build_report(run_dir, user)
    assert user.read_text(encoding="utf-8") == "<html>my page</html>"
    build_report(run_dir, user, force=True)
    build_report(run_dir, user)  # ours now: replaced without --force
    with pytest.raises(InputError, match="input file"):
        build_report(run_dir, run_dir / "metrics.json", force=True)


@pytest.mark.parametrize("content,problem", [
    ('{"hotspots": [1, 2', "invalid JSON"),
    ('{"hotspots": {"a": 1}}', "hotspots: expected a list"),
    ('[1, 2]', "expected an object"),
    ('{"hotspots": [{"readings": {"a": 3}}]}', "hotspots[0].readings.a: expected a list"),
])
def test_bad_analysis_is_one_line_error(tmp_path: Path, content: str, problem: str, capsys) -> None:
    d = tmp_path / "an"
    d.mkdir()
    (d / "analysis.json").write_text(content, encoding="utf-8")
    assert main(["report", str(d)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and problem in err and "Traceback" not in err
    assert str(d / "analysis.json") in err


def test_bad_ledger_line_names_line(run_dir: Path, tmp_path: Path, capsys) -> None:
    import shutil

    r = tmp_path / "run"
    shutil.copytree(run_dir, r)
    lines = (r / "ledger.jsonl").read_text(encoding="utf-8").splitlines()
    lines[2] = "{not json"
    (r / "ledger.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert main(["report", str(r), "--out", str(tmp_path / "x.html")]) == 2
    assert "ledger.jsonl:3: invalid JSON" in capsys.readouterr().err


def test_not_a_run(tmp_path: Path, capsys) -> None:
    assert main(["report", str(tmp_path)]) == 2
    assert "neither a refine run directory" in capsys.readouterr().err


def test_cli_report(run_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "cli.html"
    assert main(["report", str(run_dir), "--out", str(out), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["report"] == str(out) and res["kind"] == "run" and res["iterations"] == 2
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert main(["report", "--help"]) == 0
    assert "Example:" in capsys.readouterr().out


def test_evil_text_is_in_fixture() -> None:
    assert "<script>" in EVIL


def test_the_summary_is_the_selected_guideline_and_the_delivered_corpus(tmp_path: Path) -> None:
    import re

    from test_report_fixtures import ANN0, ANN1, analysis_json, make_run

    run = make_run(tmp_path / "run")
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    metrics["selected_iteration"] = 0  # the last iteration (1) was rejected
    (run / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    final = analysis_json(ANN1)
    (run / "final" / "analysis.json").write_text(json.dumps(final), encoding="utf-8")
    it0 = analysis_json(ANN0)
    out = build_report(run, tmp_path / "r.html")
    html = out.read_text(encoding="utf-8")
    summary = html[html.index('<section id="summary">'):html.index("</section>", html.index('<section id="summary">'))]
    facts = dict(re.findall(r"<tr><th>([^<]+)</th><td>([^<]*)</td></tr>", summary))
    assert facts["selected iteration"] == "0"
    assert facts["pilot agreement (selected iteration)"] == f"{it0['mean_pairwise_f1']:.3f}"
    assert facts["elite set (selected iteration)"] == ", ".join(it0["elite"])
    assert facts["delivered corpus: documents"] == str(len(final["documents"]))
    assert facts["delivered corpus: mean pairwise F1"] == f"{final['mean_pairwise_f1']:.3f}"
    assert facts["delivered corpus: hotspots"] == str(len(final["hotspots"]))
    assert "annotators (last analysis)" not in facts
