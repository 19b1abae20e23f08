"""The Jinja2 template of the HTML report (autoescaped; self-contained: inline CSS, SVG, JS)."""
from __future__ import annotations

GENERATOR = "diziner-report"

CSS = """
:root{--fg:#1b1f24;--muted:#57606a;--line:#d0d7de;--bg2:#f6f8fa;--ent:#fff1b8;--hot:#d55e00}
*{box-sizing:border-box}
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);margin:0;background:#fff}
header.top{padding:16px 28px;border-bottom:1px solid var(--line);background:var(--bg2)}
header.top h1{margin:0;font-size:22px}
nav a{margin-right:14px}
main{padding:8px 28px 60px;max-width:1200px}
section{margin-top:28px}
h2{border-bottom:1px solid var(--line);padding-bottom:4px}
table{border-collapse:collapse;margin:8px 0}
th,td{border:1px solid var(--line);padding:3px 8px;text-align:left;vertical-align:top}
th{background:var(--bg2)}
td.n{text-align:right;font-variant-numeric:tabular-nums}
tr.sel td{background:#e7f5ee;font-weight:600}
.muted,.none{color:var(--muted)}
.chart{max-width:100%;height:auto;font-family:inherit}
.chart .ct{font-size:14px;font-weight:600}
.chart .ax,.chart .cl{font-size:11px;fill:#333}
.chart .hv{font-size:11px}
.chart .grid{stroke:#e5e5e5}
.charts{display:flex;flex-wrap:wrap;gap:18px}
mark.ent{background:var(--ent);padding:0 1px;border-radius:2px}
mark.ent mark.ent{background:#ffd666}
sup.lab{font-size:10px;color:#7a4a00;margin-left:1px;font-weight:600}
span.hot{text-decoration:underline 2px var(--hot);text-underline-offset:3px}
.hotspot{border:1px solid var(--line);border-radius:6px;padding:8px 12px;margin:10px 0}
.hotspot:target{outline:3px solid #0072B2}
.hotspot header{font-size:13px;color:var(--muted)}
.cat{display:inline-block;border-radius:10px;padding:0 8px;background:#e8eefc;color:#0a3069;font-size:12px}
.ctx{background:var(--bg2);padding:6px 8px;border-radius:4px;white-space:pre-wrap}
.readings td:first-child{white-space:nowrap;font-weight:600}
.readings tr.consensus td{background:#f0f7ff}
.chip{margin-right:8px}
.filters{position:sticky;top:0;background:#fff;padding:6px 0;border-bottom:1px solid var(--line);z-index:2}
.rule{margin:6px 0 6px 0}
.rule .rid{font-weight:600;margin-right:6px}
.rule .prov{font-size:12px;color:var(--muted)}
.rule:target{outline:3px solid #0072B2}
.ex{font-size:13px;color:#333;margin-left:18px}
ins{background:#dafbe1;text-decoration:none}
del{background:#ffebe9}
pre.diff{background:var(--bg2);padding:8px;overflow:auto;font-size:12px}
pre.diff .add{color:#116329}
pre.diff .rem{color:#a40e26}
pre.diff .hdr{color:#0550ae}
.change-added{color:#116329}.change-removed{color:#a40e26}.change-changed{color:#9a6700}
mark.sup-hi{background:#b7e4c7}mark.sup-mid{background:#ffe08a}mark.sup-lo{background:#ffc9c9}
.doc{border-bottom:1px solid var(--line);padding:6px 0}
.doc .did{font-size:12px;color:var(--muted);margin-right:8px}
.doc details{font-size:13px;margin-left:18px}
"""

JS = r"""
(function(){
  "use strict";
  var data = JSON.parse(document.getElementById("report-data").textContent);
  var catSel = document.getElementById("hotspot-filter");
  var itSel = document.getElementById("hotspot-iteration");
  var count = document.getElementById("hotspot-count");
  if(!catSel || !itSel){ return; }
  var cats = {};
  data.iterations.forEach(function(it){
    var o = document.createElement("option"); o.value = it.key; o.textContent = it.label; itSel.appendChild(o);
    Object.keys(it.categories).forEach(function(c){ cats[c] = (cats[c]||0) + it.categories[c]; });
  });
  Object.keys(cats).sort().forEach(function(c){
    var o = document.createElement("option"); o.value = c; o.textContent = c + " (" + cats[c] + ")"; catSel.appendChild(o);
  });
  if(data.default_iteration !== null){ itSel.value = data.default_iteration; }
  function apply(){
    var c = catSel.value, t = itSel.value, shown = 0, total = 0;
    var cards = document.querySelectorAll("article.hotspot");
    for(var i=0;i<cards.length;i++){
      var el = cards[i], okT = (t === "" || el.dataset.iteration === t);
      if(okT){ total++; }
      var ok = okT && (c === "" || el.dataset.category === c);
      el.hidden = !ok; if(ok){ shown++; }
    }
    count.textContent = "showing " + shown + " of " + total + " hotspot" + (total === 1 ? "" : "s");
  }
  catSel.addEventListener("change", apply);
  itSel.addEventListener("change", apply);
  window.addEventListener("hashchange", function(){
    var el = document.getElementById(location.hash.slice(1));
    if(el && el.classList.contains("hotspot") && el.hidden){ itSel.value = el.dataset.iteration; catSel.value = ""; apply(); el.scrollIntoView(); }
  });
  apply();
  if(location.hash){ window.dispatchEvent(new HashChangeEvent("hashchange")); }
})();
(function(){
  "use strict";
  var lab = document.getElementById("corpus-label"), hot = document.getElementById("corpus-hot");
  var sup = document.getElementById("corpus-support"), count = document.getElementById("corpus-count");
  var supVal = document.getElementById("corpus-support-value");
  if(!lab || !hot || !sup){ return; }
  function apply(){
    var l = lab.value, h = hot.checked, m = parseFloat(sup.value), shown = 0;
    var docs = document.querySelectorAll("article.doc");
    supVal.textContent = m >= 1 ? "any" : "≤ " + m.toFixed(2);
    for(var i=0;i<docs.length;i++){
      var d = docs[i];
      var ok = (l === "" || (" " + d.dataset.labels + " ").indexOf(" " + l + " ") >= 0)
        && (!h || d.dataset.hot === "1") && (m >= 1 || parseFloat(d.dataset.minSupport) <= m);
      d.hidden = !ok; if(ok){ shown++; }
    }
    count.textContent = "showing " + shown + " of " + docs.length + " document" + (docs.length === 1 ? "" : "s");
  }
  lab.addEventListener("change", apply); hot.addEventListener("change", apply); sup.addEventListener("input", apply);
  apply();
})();
"""

TEMPLATE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="generator" content="{{ generator }}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
<title>{{ title }}</title>
<style>{{ css }}</style>
</head>
<body>
<header class="top">
<h1 id="report-title">{{ title }}</h1>
<div class="muted">{{ subtitle }}</div>
<nav>
<a href="#summary">summary</a>
{% if charts %}<a href="#charts">charts</a>{% endif %}
{% if heatmaps %}<a href="#agreement">pairwise agreement</a>{% endif %}
<a href="#hotspots">hotspots</a>
{% if corpus %}<a href="#corpus">corpus</a>{% endif %}
{% if guidelines %}<a href="#guidelines">guidelines</a>{% endif %}
{% if ledger %}<a href="#ledger">usage</a>{% endif %}
</nav>
</header>
<main>
<section id="summary">
<h2>Summary</h2>
<table>
<tr><th>source</th><td><code>{{ root }}</code> ({{ kind_label }})</td></tr>
{% for k, v in facts %}<tr><th>{{ k }}</th><td>{{ v }}</td></tr>{% endfor %}
</table>
{% if metric_rows %}
<table id="metrics-table">
<tr><th>iteration</th><th>mean pairwise F1</th><th>hotspots</th><th>elite</th>{% if has_f1 %}<th>F1 (consensus vs gold)</th>{% endif %}</tr>
{% for r in metric_rows %}<tr{% if r.selected %} class="sel" title="selected iteration"{% endif %}>
<td>{{ r.iteration }}{% if r.selected %} ★{% endif %}</td><td class="n">{{ r.mpf1 }}</td><td class="n">{{ r.hotspots }}</td><td>{{ r.elite }}</td>{% if has_f1 %}<td class="n">{{ r.f1 }}</td>{% endif %}</tr>
{% endfor %}
</table>
{% endif %}
{% for n in notes %}<p class="muted">note: {{ n }}</p>{% endfor %}
</section>

{% if charts %}
<section id="charts">
<h2>Charts</h2>
<div class="charts">
{% for c in charts %}<figure id="{{ c.id }}">{{ c.svg }}<figcaption class="muted">{{ c.caption }}</figcaption></figure>
{% endfor %}
</div>
</section>
{% endif %}

{% if heatmaps %}
<section id="agreement">
<h2>Pairwise agreement (strict span F1)</h2>
{% for h in heatmaps %}
<details id="heatmap-{{ h.key }}"{% if loop.last %} open{% endif %}><summary>{{ h.label }}</summary>
{{ h.svg }}
{% if h.agreement %}<table><tr><th>chance-corrected agreement</th><th>value</th></tr>
{% for k, v in h.agreement %}<tr><td>{{ k }}</td><td class="n">{{ v }}</td></tr>{% endfor %}</table>{% endif %}
{% if h.weights %}<table><tr><th>annotator</th><th>weight</th><th>elite</th></tr>
{% for a, w, e in h.weights %}<tr><td>{{ a }}</td><td class="n">{{ w }}</td><td>{{ "yes" if e else "" }}</td></tr>{% endfor %}</table>{% endif %}
</details>
{% endfor %}
</section>
{% endif %}

<section id="hotspots">
<h2>Hotspots</h2>
<p class="muted">Spans where the weighted annotators disagree most (high U*). The hot region is underlined; each annotator's reading and the consensus are shown side by side.</p>
<div class="filters">
<label>iteration <select id="hotspot-iteration"><option value="">all</option></select></label>
<label>category <select id="hotspot-filter"><option value="">all</option></select></label>
<span id="hotspot-count" class="muted"></span>
</div>
{% if not hotspots %}<p class="none">No hotspots.</p>{% endif %}
{% for h in hotspots %}
<article class="hotspot" id="{{ h.anchor }}" data-category="{{ h.category }}" data-iteration="{{ h.iter_key }}">
<header>{{ h.iter_label }} · hotspot #{{ h.index }} · <span class="cat">{{ h.category }}</span> · document <code>{{ h.document }}</code>
{% if h.tokens %} · tokens {{ h.tokens }}{% endif %}{% if h.mean_u_star is not none %} · mean U* {{ h.mean_u_star }}{% endif %}
{% if h.elite_agree is not none %} · elite {{ "agree" if h.elite_agree else "split" }}{% endif %}</header>
<p class="ctx">{{ h.context }}</p>
<table class="readings">
<tr><th>reading</th><th>{{ "text" if h.has_text else "mentions" }}</th></tr>
{% for name, html in h.readings %}<tr><td>{{ name }}</td><td>{{ html }}</td></tr>{% endfor %}
{% if h.consensus is not none %}<tr class="consensus"><td>consensus</td><td>{{ h.consensus }}</td></tr>{% endif %}
</table>
{% if h.errors %}<ul class="errors">{% for e in h.errors %}<li><b>{{ e.type }}</b>: {{ e.reading }}{% if e.consensus %} (consensus: {{ e.consensus }}){% endif %} — {{ e.annotators }}</li>{% endfor %}</ul>{% endif %}
{% if h.rules %}<p class="muted">motivated: {% for r in h.rules %}<a href="#{{ r.anchor }}">{{ r.label }}</a>{% if not loop.last %}, {% endif %}{% endfor %}</p>{% endif %}
</article>
{% endfor %}
</section>

{% if corpus %}
<section id="corpus">
<h2>Delivered corpus</h2>
<p class="muted">What <code>final/annotations.jsonl</code> holds: each span coloured by its support
(<mark class="ent sup-hi">≥ 0.75</mark> <mark class="ent sup-mid">≥ 0.5</mark> <mark class="ent sup-lo">lower</mark>),
hotspot spans underlined, label, support and annotators in the tooltip; each annotator's reading under the document.
{% if corpus.shown < corpus.total %}The first {{ corpus.shown }} of {{ corpus.total }} documents are shown.{% endif %}</p>
<div class="filters">
<label>label <select id="corpus-label"><option value="">all</option>{% for l in corpus.labels %}<option value="{{ l }}">{{ l }}</option>{% endfor %}</select></label>
<label><input type="checkbox" id="corpus-hot"> hotspots only</label>
<label>lowest support <input type="range" id="corpus-support" min="0" max="1" step="0.05" value="1"> <span id="corpus-support-value">any</span></label>
<span id="corpus-count" class="muted"></span>
</div>
{% for d in corpus.docs %}
<article class="doc" id="doc-{{ loop.index }}" data-labels="{{ d.labels }}" data-hot="{{ d.hot }}" data-min-support="{{ d.min_support }}">
<span class="did">{{ d.id }}</span>{{ d.html }}{% if d.failed %} <span class="muted">(failed: {{ d.failed }})</span>{% endif %}
{% if d.readings %}<details><summary>readings</summary><table class="readings">
{% for name, html in d.readings %}<tr><td>{{ name }}</td><td>{{ html }}</td></tr>{% endfor %}
</table></details>{% endif %}
</article>
{% endfor %}
</section>
{% endif %}

{% if guidelines %}
<section id="guidelines">
<h2>Guidelines</h2>
{% if schema %}
<details id="schema"><summary>Schema Σ (fixed): {{ schema.name }}</summary>
<table><tr><th>label</th><th>definition</th><th>examples</th></tr>
{% for lab in schema.labels %}<tr><td><code>{{ lab.name }}</code></td><td>{{ lab.definition }}</td><td>{{ lab.positive_examples | join(", ") }}{% if lab.negative_examples %}<br><span class="muted">not: {{ lab.negative_examples | join(", ") }}</span>{% endif %}</td></tr>{% endfor %}
</table></details>
{% endif %}
{% for g in guidelines %}
<details class="guideline" id="guideline-{{ g.key }}"{% if g.open %} open{% endif %}>
<summary><b>{{ g.label }}</b>{% if g.selected %} ★ selected{% endif %} — {{ g.n_rules }} rule{{ "" if g.n_rules == 1 else "s" }}{% if g.diff is not none %}, {{ g.diff | length }} change{{ "" if g.diff | length == 1 else "s" }} since the previous iteration{% endif %}</summary>
<p><b>Goal G:</b> {{ g.goal }}</p>
{% for scope in g.scopes %}
<h4>{{ scope.title }}</h4>
{% if not scope.rules %}<p class="none">none</p>{% endif %}
{% for r in scope.rules %}
<div class="rule" id="{{ r.anchor }}" style="margin-left:{{ r.depth * 18 }}px">
<span class="rid">{{ r.id }}</span>{{ r.text }}
{% for ex in r.examples %}<div class="ex">e.g. “{{ ex.text }}” → {{ ex.mentions }}{% if ex.rationale %} <span class="muted">({{ ex.rationale }})</span>{% endif %}</div>{% endfor %}
<div class="prov">added in iteration {{ r.added_in }}{% if r.changed_in %}, changed in {{ r.changed_in }}{% endif %} · {{ r.source }}
{% if r.links %} · motivated by: {% for l in r.links %}{% if l.anchor %}<a href="#{{ l.anchor }}">{{ l.text }}</a>{% else %}<span>{{ l.text }}</span>{% endif %}{% if not loop.last %}, {% endif %}{% endfor %}{% endif %}</div>
</div>
{% endfor %}
{% endfor %}
{% if g.diff is not none %}
<h4>Changes since the previous iteration</h4>
{% if not g.diff %}<p class="none">no changes</p>{% endif %}
<ul class="diff">{% for d in g.diff %}<li><span class="change-{{ d.change }}">{{ d.change }}</span> {{ d.scope }} <b>{{ d.id }}</b>: {{ d.html }}</li>{% endfor %}</ul>
{% if g.diff_summary %}<p class="muted">{{ g.diff_summary }}</p>{% endif %}
{% if g.diff_text %}<details><summary>readable diff</summary><pre class="diff">{{ g.diff_text }}</pre></details>{% endif %}
{% if g.yaml_diff %}<details><summary>YAML diff</summary><pre class="diff">{{ g.yaml_diff }}</pre></details>{% endif %}
{% endif %}
</details>
{% endfor %}
</section>
{% endif %}

{% if ledger %}
<section id="ledger">
<h2>Usage</h2>
<p class="muted">Calls, cache hits, tokens and cost from <code>ledger.jsonl</code>. A call whose price is unknown is counted as unknown, never as $0; cache hits cost nothing.</p>
<table id="ledger-table">
<tr><th>annotator</th><th>iteration</th><th>calls</th><th>failed</th><th>cache hits</th><th>tokens in</th><th>tokens out</th><th>latency s</th><th>cost</th></tr>
{% for r in ledger.rows %}<tr><td>{{ r.annotator }}</td><td>{{ r.iteration }}</td><td class="n">{{ r.calls }}</td><td class="n">{{ r.failed }}</td><td class="n">{{ r.cached }}</td><td class="n">{{ r.tokens_in }}</td><td class="n">{{ r.tokens_out }}</td><td class="n">{{ r.latency }}</td><td class="n">{{ r.cost }}</td></tr>{% endfor %}
</table>
<h4>By annotator</h4>
<table id="ledger-annotators">
<tr><th>annotator</th><th>calls</th><th>failed</th><th>cache hits</th><th>tokens in</th><th>tokens out</th><th>latency s</th><th>cost</th></tr>
{% for r in ledger.by_annotator %}<tr><td>{{ r.annotator }}</td><td class="n">{{ r.calls }}</td><td class="n">{{ r.failed }}</td><td class="n">{{ r.cached }}</td><td class="n">{{ r.tokens_in }}</td><td class="n">{{ r.tokens_out }}</td><td class="n">{{ r.latency }}</td><td class="n">{{ r.cost }}</td></tr>{% endfor %}
<tr><th>total</th><th class="n">{{ ledger.total.calls }}</th><th class="n">{{ ledger.total.failed }}</th><th class="n">{{ ledger.total.cached }}</th><th class="n">{{ ledger.total.tokens_in }}</th><th class="n">{{ ledger.total.tokens_out }}</th><th class="n">{{ ledger.total.latency }}</th><th class="n" id="ledger-total-cost">{{ ledger.total.cost }}</th></tr>
</table>
<h4>By purpose</h4>
<table>
<tr><th>purpose</th><th>calls</th><th>cache hits</th><th>tokens in</th><th>tokens out</th><th>cost</th></tr>
{% for r in ledger.by_purpose %}<tr><td>{{ r.purpose }}</td><td class="n">{{ r.calls }}</td><td class="n">{{ r.cached }}</td><td class="n">{{ r.tokens_in }}</td><td class="n">{{ r.tokens_out }}</td><td class="n">{{ r.cost }}</td></tr>{% endfor %}
</table>
</section>
{% endif %}
</main>
<script type="application/json" id="report-data">{{ data_json }}</script>
<script>{{ js }}</script>
</body>
</html>
"""
