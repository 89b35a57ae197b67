"""The attention explorer: one self-contained HTML page (scripts, styles and data inline; no network) to inspect
attention weights interactively.

    hypotheses = [explorer_hypothesis('beam4', '1 (score -1.23)', target_tokens, weights_TS, score=-1.23)]
    sentences = [explorer_sentence(source_tokens, hypotheses, reference='...')]
    write_explorer('explorer.html', sentences, title='my run', views=[{'name': 'beam4', 'metrics': {'bleu': 20.1}}])

A sentence is shown as one panel per *view* (a decoding, a teacher-forced pass, a compared variant), side by side.
A panel lists its view's hypotheses (e.g. the n-best of a beam) as buttons; the chosen one is drawn as its source
tokens, its output tokens and the weight matrix. Hovering or clicking an output token shades every source token by
its weight (the value is shown under the token and kept in its `data-weight` attribute) and outlines the gold
links of that token in red where the dataset has them. The page's data is the JSON in
`<script id="explorer-data">`, with the weights rounded to 4 decimals.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Sequence

import numpy as np

DECIMALS = 4
EXPLORER_FILE = 'explorer.html'    # the page's name wherever a run writes one


def explorer_hypothesis(view: str, label: str, target_tokens: Sequence[str], weights_TS, *,
                        source_length: int, score: float | None = None, gold_TS=None, p_gen_T=None) -> dict:
  """One output and its attention, as the page draws it.

  Args:
    view: the panel it belongs to (e.g. 'greedy', 'beam4', a variant's name).
    label: its button's text within the panel (e.g. '1', 'reference').
    target_tokens: the T' output tokens shown (EOS included if emitted).
    weights_TS: [>= T', >= source_length] attention weights; cropped to [T', source_length].
    source_length: S', the number of source tokens shown.
    score: the decoder's score (e.g. log P / lp), shown on the button.
    gold_TS: optional [>= T', >= S'] gold links (nonzero = linked).
    p_gen_T: optional [>= T'] pointer-generator gates: the probability each output token was generated from the
      vocabulary rather than copied from the source (each token is underlined by its copy share 1 - p_gen).
  """
  t = len(target_tokens)
  weights = np.asarray(weights_TS, np.float64)[:t, :source_length]
  if weights.shape != (t, source_length):
    raise ValueError(f'weights {np.shape(weights_TS)} must cover [{t} output tokens, {source_length} source tokens].')
  record = {'view': str(view), 'label': str(label), 'tokens': [str(x) for x in target_tokens],
            'weights': np.round(weights, DECIMALS).tolist(), 'score': None if score is None else float(score),
            'gold': None}
  if p_gen_T is not None:
    gates = np.asarray(p_gen_T, np.float64)[:t]
    if gates.shape != (t,):
      raise ValueError(f'p_gen {np.shape(p_gen_T)} must cover the {t} output tokens.')
    record['p_gen'] = np.round(gates, DECIMALS).tolist()
  if gold_TS is not None:
    links = np.argwhere(np.asarray(gold_TS)[:t, :source_length] != 0)
    record['gold'] = [[int(row), int(col)] for row, col in links]
  return record


def explorer_sentence(source_tokens: Sequence[str], hypotheses: Sequence[dict], reference: str | None = None,
                      source_text: str | None = None) -> dict:
  """A source sentence with every view's hypotheses (explorer_hypothesis records, each over these tokens)."""
  return {'source': [str(x) for x in source_tokens], 'source_text': source_text, 'reference': reference,
          'hypotheses': list(hypotheses)}


def write_explorer(path: str, sentences: Sequence[dict], title: str, views: Sequence[dict] | None = None) -> str:
  """Writes the page to `path` (directories are created); returns path.

  Args:
    sentences: explorer_sentence records.
    title: the page title.
    views: optional [{'name': view, 'metrics': {name: value}}] in display order, e.g. a comparison's variants with
      their scores (shown as a table); views not listed follow in order of first appearance.
  """
  order = [dict(v) for v in views or ()]
  known = {v['name'] for v in order}
  for sentence in sentences:
    for hypothesis in sentence['hypotheses']:
      if hypothesis['view'] not in known:
        known.add(hypothesis['view'])
        order.append({'name': hypothesis['view'], 'metrics': {}})
  for view in order:
    view['metrics'] = {str(k): (None if v is None or not np.isfinite(float(v)) else float(v))
                       for k, v in (view.get('metrics') or {}).items()}
  data = json.dumps({'title': title, 'views': order, 'sentences': list(sentences)}, separators=(',', ':'))
  data = data.replace('</', '<\\/')        # the JSON sits inside a <script> element
  page = _PAGE.replace('__TITLE__', html.escape(title)).replace('__DATA__', data)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, 'w', encoding='utf-8') as f:
    f.write(page)
  return path


def read_explorer_data(path: str) -> dict:
  """The JSON data embedded in an explorer page (for tests and for merging pages)."""
  with open(path, encoding='utf-8') as f:
    page = f.read()
  start = page.index('<script id="explorer-data" type="application/json">')
  start = page.index('>', start) + 1
  return json.loads(page[start:page.index('</script>', start)].replace('<\\/', '</'))


_PAGE = r'''<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__</title>
<style>
body{font-family:system-ui,sans-serif;margin:1.2em;color:#222}
h1{font-size:1.25em}
table.metrics{border-collapse:collapse;margin:.5em 0 1em}
table.metrics td,table.metrics th{border:1px solid #ccc;padding:2px 8px;font-size:.85em;text-align:right}
table.metrics td:first-child,table.metrics th:first-child{text-align:left}
#controls{margin:.6em 0}
.panels{display:flex;flex-wrap:wrap;gap:14px}
.panel{border:1px solid #bbb;border-radius:6px;padding:8px 10px;max-width:100%;overflow-x:auto}
.panel h2{font-size:1em;margin:0 0 4px}
.hyps button{margin:0 4px 4px 0;font-size:.8em}
.hyps button.active{background:#335;color:#fff}
.line{margin:6px 0;white-space:nowrap}
.line .caption{display:inline-block;width:4.5em;color:#777;font-size:.8em}
.tok{display:inline-block;text-align:center;padding:1px 3px;margin:1px;border:2px solid transparent;
     border-radius:3px;font-family:monospace;min-width:1em;vertical-align:top}
.tgt{cursor:pointer}
.tgt.selected{border-color:#335}
.src .w{display:block;font-size:.65em;color:#333;height:1.1em}
.src.gold{border-color:#d00}
.grid{border-collapse:collapse;margin-top:6px}
.grid td{width:14px;height:14px;padding:0;border:1px solid #fff}
.grid tr.selected td{outline:1px solid #335}
.grid td.gold{border:1px solid #d00}
.reference{color:#555;font-size:.85em}
.tgt.gated{border-bottom-width:4px}
.gate{color:#555;font-size:.8em;margin-left:4.5em;height:1.2em}
</style></head>
<body>
<h1>__TITLE__</h1>
<div id="metrics"></div>
<div id="controls"><button id="prev">&larr;</button> <select id="sentence"></select> <button id="next">&rarr;</button>
<span style="color:#777;font-size:.85em">hover or click an output token to see its weights over the source</span></div>
<div id="reference" class="reference"></div>
<div id="panels" class="panels"></div>
<script id="explorer-data" type="application/json">__DATA__</script>
<script>
(function(){
'use strict';
const data = JSON.parse(document.getElementById('explorer-data').textContent);
const views = data.views.map(v => v.name);
const el = (tag, cls, text) => { const e = document.createElement(tag); if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text; return e; };
const shade = w => 'rgba(255,110,0,' + Math.max(0, Math.min(1, w)).toFixed(3) + ')';
const cellColor = w => { const g = Math.round(255 - 200 * Math.max(0, Math.min(1, w))); return 'rgb(' + g + ',' + g + ',255)'; };
const visible = t => (t.trim() === '' ? '\u2423'.repeat(Math.max(t.length, 1)) : t);

function metricsTable() {
  const names = [];
  data.views.forEach(v => Object.keys(v.metrics || {}).forEach(k => { if (!names.includes(k)) names.push(k); }));
  if (!names.length) return;
  const table = el('table', 'metrics'); const head = el('tr'); head.appendChild(el('th', '', 'view'));
  names.forEach(n => head.appendChild(el('th', '', n))); table.appendChild(head);
  data.views.forEach(v => { const row = el('tr'); row.appendChild(el('td', '', v.name));
    names.forEach(n => { const x = (v.metrics || {})[n]; row.appendChild(el('td', '', x === undefined || x === null ? 'n/a'
      : (Math.abs(x) >= 100 ? x.toFixed(0) : x.toPrecision(4)))); });
    table.appendChild(row); });
  document.getElementById('metrics').appendChild(table);
}

function drawPanel(panel, sentence, hyp) {
  panel.querySelectorAll('.body').forEach(e => e.remove());
  const body = el('div', 'body');
  const srcLine = el('div', 'line'); srcLine.appendChild(el('span', 'caption', 'source'));
  const srcSpans = sentence.source.map((t, i) => { const s = el('span', 'tok src'); s.dataset.i = i;
    s.appendChild(el('span', 't', visible(t))); s.appendChild(el('span', 'w', '')); srcLine.appendChild(s); return s; });
  const tgtLine = el('div', 'line'); tgtLine.appendChild(el('span', 'caption', 'output'));
  const grid = el('table', 'grid'); const rows = [];
  const gold = new Set((hyp.gold || []).map(p => p[0] + ',' + p[1]));
  const gates = hyp.p_gen || null; const gateLine = el('div', 'gate', '');
  const tgtSpans = hyp.tokens.map((t, j) => { const s = el('span', 'tok tgt', visible(t)); s.dataset.j = j;
    if (gates) { s.classList.add('gated'); s.style.borderBottomColor = 'rgba(0,140,60,' + (1 - gates[j]).toFixed(3) + ')';
      s.title = 'p_gen ' + gates[j].toFixed(3) + ' (copied ' + (1 - gates[j]).toFixed(3) + ')'; }
    tgtLine.appendChild(s); const row = el('tr'); row.dataset.j = j;
    hyp.weights[j].forEach((w, i) => { const c = el('td'); c.style.background = cellColor(w); c.title = t + ' \u2192 '
      + sentence.source[i] + ': ' + w.toFixed(4); if (gold.has(j + ',' + i)) c.classList.add('gold'); row.appendChild(c); });
    grid.appendChild(row); rows.push(row); return s; });
  function select(j) {
    tgtSpans.forEach((s, k) => s.classList.toggle('selected', k === j));
    rows.forEach((r, k) => r.classList.toggle('selected', k === j));
    srcSpans.forEach((s, i) => { const w = hyp.weights[j][i]; s.dataset.weight = w.toFixed(4);
      s.style.background = shade(w); s.querySelector('.w').textContent = w.toFixed(2);
      s.classList.toggle('gold', gold.has(j + ',' + i)); });
    if (gates) gateLine.textContent = 'p_gen ' + gates[j].toFixed(3) + ': generated ' + (100 * gates[j]).toFixed(0)
      + '%, copied from the source ' + (100 * (1 - gates[j])).toFixed(0) + '% (green underline: copy share)';
    panel.dataset.selected = j;
  }
  tgtSpans.forEach((s, j) => { s.addEventListener('mouseenter', () => select(j)); s.addEventListener('click', () => select(j)); });
  rows.forEach((r, j) => r.addEventListener('mouseenter', () => select(j)));
  body.appendChild(srcLine); body.appendChild(tgtLine); if (gates) body.appendChild(gateLine); body.appendChild(grid); panel.appendChild(body);
}

function show(index) {
  const sentence = data.sentences[index];
  document.getElementById('sentence').value = String(index);
  document.getElementById('reference').textContent = sentence.reference ? 'reference: ' + sentence.reference : '';
  const panels = document.getElementById('panels'); panels.innerHTML = '';
  const present = views.filter(v => sentence.hypotheses.some(h => h.view === v));
  present.forEach(view => {
    const panel = el('div', 'panel'); panel.dataset.view = view; panel.appendChild(el('h2', '', view));
    const hyps = sentence.hypotheses.filter(h => h.view === view); const bar = el('div', 'hyps');
    hyps.forEach((h, k) => { const b = el('button', k === 0 ? 'active' : '', h.label + (h.score === null ? '' : ' (' + h.score.toFixed(3) + ')'));
      b.dataset.k = k; b.addEventListener('click', () => { bar.querySelectorAll('button').forEach(x => x.classList.remove('active'));
        b.classList.add('active'); panel.dataset.hypothesis = k; drawPanel(panel, sentence, h); }); bar.appendChild(b); });
    panel.appendChild(bar); panel.dataset.hypothesis = 0; drawPanel(panel, sentence, hyps[0]); panels.appendChild(panel);
  });
}

const chooser = document.getElementById('sentence');
data.sentences.forEach((s, i) => { const o = el('option', '', (i + 1) + ': ' + (s.source_text || s.source.join(' ')).slice(0, 80));
  o.value = String(i); chooser.appendChild(o); });
chooser.addEventListener('change', () => show(Number(chooser.value)));
document.getElementById('prev').addEventListener('click', () => show(Math.max(0, Number(chooser.value) - 1)));
document.getElementById('next').addEventListener('click', () => show(Math.min(data.sentences.length - 1, Number(chooser.value) + 1)));
metricsTable();
if (data.sentences.length) show(0);
document.body.dataset.ready = 'true';
})();
</script>
</body></html>
'''
