/**
 * A report as Markdown (report.md) and as one standalone HTML file (report.html): inline CSS and inline SVG,
 * no scripts and nothing fetched, so it opens anywhere and in a webview as it is. Key numbers carry stable ids
 * and a `data-value` with the raw number (e.g. `<td id="size-after" data-value="12345">`).
 */
import * as path from 'node:path';
import type { ReportData, ReportHeatmap, ReportHistogram, ReportPareto } from './types';

const pct = (x: number) => `${(x * 100).toFixed(2)}%`;
const kib = (x: number) => `${(x / 1024).toFixed(1)} KiB`;
const count = (x: number) => x.toLocaleString('en-US');
const ms = (x: number) => `${x.toFixed(3)} ms`;
const ratio = (a: number, b: number) => (a > 0 ? `${(b / a).toFixed(2)}x` : '');
const db = (x: number | undefined) => (x === undefined ? '' : x >= 999 ? 'exact' : x.toFixed(1));
const paramText = (v: unknown) => (Array.isArray(v) ? v.join(',') : String(v));

/** One summary row: label, id stem, raw and formatted values. */
interface Row {
  label: string;
  id: string;
  before: number;
  after: number;
  format: (x: number) => string;
}

function summaryRows(d: ReportData): Row[] {
  const s = d.summary;
  return [
    { label: 'file size', id: 'size', before: s.sizeBytes.before, after: s.sizeBytes.after, format: kib },
    { label: 'parameters (zeroed excluded)', id: 'params', before: s.params.before, after: s.params.after, format: count },
    { label: 'sparsity of the layer weights', id: 'sparsity', before: s.sparsity.before, after: s.sparsity.after, format: pct },
    { label: `latency median (batch 1, ${d.ep})`, id: 'latency', before: s.latencyMs.before, after: s.latencyMs.after, format: ms },
    ...(s.accuracy ? [{ label: 'accuracy', id: 'accuracy', before: s.accuracy.before, after: s.accuracy.after, format: pct }] : []),
  ];
}

function passLine(p: ReportData['passes'][number]): string {
  const params = Object.entries(p.params).filter(([, v]) => v !== undefined);
  return `${p.pass}${params.length ? ` (${params.map(([k, v]) => `${k} ${paramText(v)}`).join(', ')})` : ''}`;
}

/** report.md. */
export function reportMarkdown(d: ReportData): string {
  const s = d.summary;
  const changed = d.layers.filter((l) => l.changed);
  return [
    `# ${d.title}`,
    '',
    `Before: \`${d.before}\``,
    `After: \`${d.after}\``,
    '',
    `Data: ${d.data} (${s.samples} samples); execution provider: ${d.ep}.`,
    ...(d.passes.length ? ['', `Passes: ${d.passes.map(passLine).join(' -> ')}.`] : []),
    '',
    '| | before | after | change |',
    '|---|---:|---:|---:|',
    ...summaryRows(d).map((r) => `| ${r.label} | ${r.format(r.before)} | ${r.format(r.after)} | ${r.id === 'accuracy' ? `${(-s.accuracy!.dropPt).toFixed(2)} pt` : r.id === 'sparsity' ? '' : ratio(r.before, r.after)} |`),
    '',
    [s.top1Agreement !== undefined ? `Top-1 agreement with the model before: ${pct(s.top1Agreement)}.` : '', s.cosine !== undefined ? `Cosine of the first output: ${s.cosine}.` : ''].filter(Boolean).join(' '),
    '',
    `## Layers (${changed.length} of ${d.layers.length} changed)`,
    '',
    '| layer | op | shape | params | sparsity | stored | weight SQNR (dB) |',
    '|---|---|---|---:|---:|---|---:|',
    ...d.layers.map((l) => {
      const shape = l.shape.after && l.shape.after.join('x') !== l.shape.before.join('x') ? `${l.shape.before.join('x')} -> ${l.shape.after.join('x')}` : l.shape.before.join('x');
      const sp = l.sparsity.after !== undefined && l.sparsity.after !== l.sparsity.before ? `${pct(l.sparsity.before)} -> ${pct(l.sparsity.after)}` : pct(l.sparsity.before);
      const fmt = l.format.after && l.format.after !== l.format.before ? `${l.format.before} -> ${l.format.after}` : l.format.before;
      return `| ${l.layer} | ${l.op.before} | ${shape} | ${l.params.after ?? 'removed'} | ${sp} | ${fmt} | ${db(l.sqnrDb)} |`;
    }),
    ...(d.pareto
      ? [
          '',
          `## Candidates (${d.pareto.metric === 'accuracy' ? 'accuracy' : 'top-1 disagreement'} drop${d.pareto.maxDropPt !== undefined ? `, budget ${d.pareto.maxDropPt} pt` : ''})`,
          '',
          `| candidate | ${axisLabel(d.pareto)} | drop (pt) | chosen |`,
          '|---|---:|---:|---|',
          ...d.pareto.points.map((p) => `| ${p.label} | ${axisValue(d.pareto!, p.x)} | ${p.y} | ${p.chosen ? 'yes' : ''} |`),
        ]
      : []),
    ...(d.warnings.length ? ['', '## Warnings', '', ...d.warnings.map((w) => `- ${w}`)] : []),
    '',
  ].join('\n');
}

function axisLabel(p: ReportPareto): string {
  return { sizeBytes: 'file size', sparsity: 'sparsity', latencyMs: 'latency', floatLayers: 'layers kept in float' }[p.x];
}

function axisValue(p: ReportPareto, x: number): string {
  return p.x === 'sizeBytes' ? kib(x) : p.x === 'sparsity' ? pct(x) : p.x === 'latencyMs' ? ms(x) : String(x);
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;');
const num = (x: number) => (Number.isFinite(x) ? String(Math.round(x * 1e4) / 1e4) : '0');

/** Before/after counts as two outlined step series over shared bins. */
function histogramSvg(h: ReportHistogram): string {
  const w = 320;
  const ht = 120;
  const peak = Math.max(1, ...h.before, ...h.after);
  // Square-root scale so the tails of a peaked (e.g. pruned: a spike at 0) distribution stay visible.
  const y = (c: number) => ht - (Math.sqrt(c) / Math.sqrt(peak)) * (ht - 4);
  const bw = w / h.before.length;
  const series = (counts: number[]) => counts.map((c, k) => `${num(k * bw)},${num(y(c))} ${num((k + 1) * bw)},${num(y(c))}`).join(' ');
  const lo = h.edges[0];
  const hi = h.edges[h.edges.length - 1];
  return [
    `<svg class="histogram" data-layer="${esc(h.layer)}" viewBox="0 0 ${w} ${ht + 16}" width="${w}" height="${ht + 16}" role="img" aria-label="weight histogram of ${esc(h.layer)}">`,
    `<polyline class="before" fill="none" points="0,${ht} ${series(h.before)} ${w},${ht}"/>`,
    `<polyline class="after" fill="none" points="0,${ht} ${series(h.after)} ${w},${ht}"/>`,
    `<line x1="0" y1="${ht}" x2="${w}" y2="${ht}" class="axis"/>`,
    `<text x="0" y="${ht + 12}" class="tick">${lo.toPrecision(3)}</text><text x="${w}" y="${ht + 12}" class="tick" text-anchor="end">${hi.toPrecision(3)}</text>`,
    '</svg>',
  ].join('');
}

/** A grid of cells: mask kept fraction (blue) or error magnitude (red). */
function heatmapSvg(m: ReportHeatmap): string {
  const cell = Math.max(4, Math.min(12, Math.floor(360 / m.cols)));
  const w = m.cols * cell;
  const h = m.rows * cell;
  const span = m.max - m.min || 1;
  const colour = (v: number) => {
    const t = Math.max(0, Math.min(1, (v - m.min) / span));
    return m.kind === 'mask' ? `rgb(${Math.round(240 - 200 * t)},${Math.round(244 - 150 * t)},${Math.round(250 - 60 * t)})` : `rgb(${Math.round(250 - 30 * t)},${Math.round(245 - 200 * t)},${Math.round(240 - 210 * t)})`;
  };
  const rects: string[] = [];
  for (let r = 0; r < m.rows; r++) for (let c = 0; c < m.cols; c++) rects.push(`<rect x="${c * cell}" y="${r * cell}" width="${cell}" height="${cell}" fill="${colour(m.values[r * m.cols + c])}"/>`);
  return `<svg class="heatmap" data-layer="${esc(m.layer)}" data-kind="${m.kind}" viewBox="0 0 ${w} ${h}" width="${w}" height="${h}" role="img" aria-label="${m.kind === 'mask' ? 'prune mask' : 'quantization error'} of ${esc(m.layer)}">${rects.join('')}</svg>`;
}

/** Candidates as points (x: the pareto's axis, y: drop in points), the chosen one filled, the budget dashed. */
function paretoSvg(p: ReportPareto): string {
  const w = 360;
  const h = 200;
  const pad = 36;
  const xs = p.points.map((q) => q.x);
  const ys = [...p.points.map((q) => q.y), ...(p.maxDropPt !== undefined ? [p.maxDropPt] : []), 0];
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  const [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  const sx = (x: number) => pad + ((x - x0) / (x1 - x0 || 1)) * (w - 2 * pad);
  const sy = (y: number) => h - pad - ((y - y0) / (y1 - y0 || 1)) * (h - 2 * pad);
  return [
    `<svg id="pareto" viewBox="0 0 ${w} ${h}" width="${w}" height="${h}" role="img" aria-label="candidates: ${esc(axisLabel(p))} against drop">`,
    `<line class="axis" x1="${pad}" y1="${h - pad}" x2="${w - pad}" y2="${h - pad}"/><line class="axis" x1="${pad}" y1="${pad}" x2="${pad}" y2="${h - pad}"/>`,
    ...(p.maxDropPt !== undefined ? [`<line class="budget" x1="${pad}" y1="${num(sy(p.maxDropPt))}" x2="${w - pad}" y2="${num(sy(p.maxDropPt))}"/>`] : []),
    ...p.points.map((q) => `<circle class="candidate${q.chosen ? ' chosen' : ''}" cx="${num(sx(q.x))}" cy="${num(sy(q.y))}" r="${q.chosen ? 6 : 4}" data-x="${q.x}" data-y="${q.y}"><title>${esc(q.label)}: ${q.y} pt</title></circle>`),
    `<text class="tick" x="${w / 2}" y="${h - 8}" text-anchor="middle">${esc(axisLabel(p))}</text>`,
    `<text class="tick" x="10" y="${h / 2}" transform="rotate(-90 10 ${h / 2})" text-anchor="middle">drop (pt)</text>`,
    '</svg>',
  ].join('');
}

const css = `
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#1d2430;background:#fff;max-width:1100px}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:24px 0 8px}
.paths,.meta{color:#5a6473;font-size:12px;word-break:break-all}
table{border-collapse:collapse;margin:8px 0}th,td{padding:3px 10px;border-bottom:1px solid #e3e7ee;text-align:left}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
tr.changed td:first-child{font-weight:600}
.figures{display:flex;flex-wrap:wrap;gap:20px}.figure{margin:0}.figure figcaption{font-size:12px;color:#5a6473}
polyline.before{stroke:#8a94a6;stroke-width:1.5}polyline.after{stroke:#2563eb;stroke-width:1.5}
.axis{stroke:#9aa3b2}.tick{font-size:10px;fill:#5a6473}.budget{stroke:#dc2626;stroke-dasharray:4 3}
circle.candidate{fill:#fff;stroke:#2563eb;stroke-width:1.5}circle.candidate.chosen{fill:#2563eb}
.legend span{display:inline-block;width:10px;height:3px;margin:0 4px 2px 10px;vertical-align:middle}
.warnings li{color:#92400e}
@media (prefers-color-scheme: dark){body{background:#1e1e1e;color:#ddd}th,td{border-color:#3a3f47}.paths,.meta,.figure figcaption{color:#9aa3b2}circle.candidate{fill:#1e1e1e}}
`;

/** report.html: the whole report in one file. */
export function reportHtml(d: ReportData): string {
  const s = d.summary;
  const cell = (id: string, v: number, text: string) => `<td class="n" id="${id}" data-value="${v}">${esc(text)}</td>`;
  const rows = summaryRows(d).map((r) => {
    const change = r.id === 'accuracy' ? cell('accuracy-drop', s.accuracy!.dropPt, `${(-s.accuracy!.dropPt).toFixed(2)} pt`) : r.id === 'sparsity' ? '<td></td>' : `<td class="n">${ratio(r.before, r.after)}</td>`;
    return `<tr><th>${esc(r.label)}</th>${cell(`${r.id}-before`, r.before, r.format(r.before))}${cell(`${r.id}-after`, r.after, r.format(r.after))}${change}</tr>`;
  });
  const layerRows = d.layers.map((l) => {
    const shape = l.shape.after && l.shape.after.join('x') !== l.shape.before.join('x') ? `${l.shape.before.join('x')} → ${l.shape.after.join('x')}` : l.shape.before.join('x');
    return `<tr class="layer${l.changed ? ' changed' : ''}" data-layer="${esc(l.layer)}"><td>${esc(l.layer)}</td><td>${esc(l.op.before)}</td><td>${esc(shape)}</td><td class="n">${count(l.params.before)}</td><td class="n">${l.params.after === undefined ? 'removed' : count(l.params.after)}</td><td class="n">${pct(l.sparsity.before)}</td><td class="n">${l.sparsity.after === undefined ? '' : pct(l.sparsity.after)}</td><td>${esc(l.format.after && l.format.after !== l.format.before ? `${l.format.before} → ${l.format.after}` : l.format.before)}</td><td class="n">${db(l.sqnrDb)}</td></tr>`;
  });
  return [
    '<!DOCTYPE html>',
    '<html lang="en"><head><meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    `<title>${esc(d.title)}</title><style>${css}</style></head><body>`,
    `<h1>${esc(d.title)}</h1>`,
    `<div class="paths">before <code id="model-before">${esc(d.before)}</code><br>after <code id="model-after">${esc(d.after)}</code></div>`,
    `<p class="meta">Data <span id="data">${esc(d.data)}</span> (<span id="samples">${s.samples}</span> samples); execution provider <span id="ep">${esc(d.ep)}</span>.${d.passes.length ? ` Passes: <span id="passes">${esc(d.passes.map(passLine).join(' → '))}</span>.` : ''}</p>`,
    '<h2>Summary</h2>',
    `<table id="summary"><thead><tr><th></th><th class="n">before</th><th class="n">after</th><th class="n">change</th></tr></thead><tbody>${rows.join('')}</tbody></table>`,
    `<p>${s.top1Agreement !== undefined ? `Top-1 agreement with the model before: <span id="top1-agreement" data-value="${s.top1Agreement}">${pct(s.top1Agreement)}</span>. ` : ''}${s.cosine !== undefined && s.cosine !== null ? `Cosine of the first output: <span id="cosine" data-value="${esc(String(s.cosine))}">${esc(String(s.cosine))}</span>.` : ''}</p>`,
    ...(d.warnings.length ? ['<h2>Warnings</h2>', `<ul class="warnings" id="warnings">${d.warnings.map((w) => `<li>${esc(w)}</li>`).join('')}</ul>`] : []),
    ...(d.pareto ? ['<h2>Candidates</h2>', `<p class="meta">Each point is a model that was built and evaluated; the filled one was written${d.pareto.maxDropPt !== undefined ? `; the dashed line is the budget (${d.pareto.maxDropPt} pt)` : ''}.</p>`, paretoSvg(d.pareto)] : []),
    ...(d.histograms.length
      ? ['<h2>Weights of the most changed layers</h2>', '<p class="legend">before<span style="background:#8a94a6"></span> after<span style="background:#2563eb"></span> (counts on a square-root scale)</p>', `<div class="figures">${d.histograms.map((h) => `<figure class="figure">${histogramSvg(h)}<figcaption>${esc(h.layer)}</figcaption></figure>`).join('')}</div>`]
      : []),
    ...(d.heatmaps.length
      ? ['<h2>Masks and errors</h2>', '<p class="meta">Each cell averages a block of the weight matrix (first dimension down, the rest across): blue = fraction of weights kept by pruning, red = mean |after − before| of the kept weights.</p>', `<div class="figures">${d.heatmaps.map((m) => `<figure class="figure">${heatmapSvg(m)}<figcaption>${esc(m.layer)}: ${m.kind === 'mask' ? 'kept fraction' : `error, max ${m.max.toPrecision(3)}`} (${m.matrix[0]}x${m.matrix[1]} → ${m.rows}x${m.cols})</figcaption></figure>`).join('')}</div>`]
      : []),
    `<h2>Layers (${d.layers.filter((l) => l.changed).length} of ${d.layers.length} changed)</h2>`,
    `<table id="layers"><thead><tr><th>layer</th><th>op</th><th>shape</th><th class="n">params before</th><th class="n">after</th><th class="n">sparsity before</th><th class="n">after</th><th>stored</th><th class="n">SQNR (dB)</th></tr></thead><tbody>${layerRows.join('')}</tbody></table>`,
    `<p class="meta">Written by Whittle. ${esc(path.basename(d.after))}</p>`,
    '</body></html>',
    '',
  ].join('\n');
}
