import { axisBottom, axisLeft, max as d3max, scaleBand, scaleLinear, scaleSymlog, select } from 'd3';
import type { LayerHistogram, ModelOrigin } from '../../src/protocol/inspector';
import { formatCount, formatNumber, h } from '../common/dom';
import { t } from '../common/l10n';

/**
 * The Inspector's before/after views of a model Whittle wrote: the source layer's histogram against this one's
 * on shared bins, the structured prune's removed channels, and the per-channel and per-activation SQNR charts.
 */

const svgNs = 'http://www.w3.org/2000/svg';

/** A root SVG with a viewBox, a role and a label (screen readers read the label; each mark has a title too). */
function svgRoot(cls: string, width: number, height: number, label: string) {
  return select(document.createElementNS(svgNs, 'svg'))
    .attr('class', cls)
    .attr('viewBox', `0 0 ${width} ${height}`)
    .attr('width', width)
    .attr('height', height)
    .attr('role', 'img')
    .attr('aria-label', label);
}

/** Per bin: the source's count, this model's, and what the source had more of (the removed or moved mass). */
export interface CompareBin {
  from: number;
  to: number;
  before: number;
  after: number;
  gone: number;
}

/** Pairs two histograms over the same bins; throws when the edges differ (they were not counted over one range). */
export function compareBins(before: LayerHistogram, after: LayerHistogram): CompareBin[] {
  if (before.counts.length !== after.counts.length || before.edges.some((e, i) => Math.abs(e - after.edges[i]) > 1e-9 * Math.max(1, Math.abs(e)))) {
    throw new Error('the two histograms do not share bins');
  }
  return before.counts.map((b, i) => ({ from: before.edges[i], to: before.edges[i + 1], before: b, after: after.counts[i], gone: Math.max(0, b - after.counts[i]) }));
}

/**
 * The overlay: this model's counts as filled bars, the source's as an outline, and where the source had more,
 * the difference highlighted (pruned mass, or values moved by rounding), with a legend of the totals.
 */
export function compareHistogramSvg(before: LayerHistogram, after: LayerHistogram, log: boolean, pass: string): SVGSVGElement {
  const bins = compareBins(before, after);
  const width = 420;
  const height = 220;
  const m = { l: 48, r: 8, t: 30, b: 24 };
  const lo = bins[0].from;
  const hi = bins[bins.length - 1].to;
  const x = scaleLinear().domain([lo, hi === lo ? lo + 1 : hi]).range([m.l, width - m.r]);
  const top = Math.max(1, d3max(bins, (d) => Math.max(d.before, d.after)) ?? 1);
  const y = (log ? scaleSymlog() : scaleLinear()).domain([0, top]).range([height - m.b, m.t]);
  const total = (k: 'before' | 'after' | 'gone') => bins.reduce((a, d) => a + d[k], 0);
  const goneLabel = pass === 'prune' ? 'pruned mass' : 'moved by rounding';
  const svg = svgRoot('histogram histogram-compare', width, height, `Histogram of ${after.tensor} in this model against the source model: ${formatCount(total('gone'))} values ${goneLabel}`);
  const readout = svg.append('text').attr('class', 'readout').attr('x', width - m.r).attr('y', m.t + 8).attr('text-anchor', 'end');
  const tip = (d: CompareBin) => `[${formatNumber(d.from)}, ${formatNumber(d.to)}): before ${formatCount(d.before)}, after ${formatCount(d.after)}${d.gone ? `, ${goneLabel} ${formatCount(d.gone)}` : ''}`;
  const g = svg.append('g').selectAll('g').data(bins).join('g');
  const bw = (d: CompareBin) => Math.max(1, x(d.to) - x(d.from) - 0.5);
  g.append('rect')
    .attr('class', 'bar after')
    .attr('x', (d) => x(d.from))
    .attr('width', bw)
    .attr('y', (d) => y(d.after))
    .attr('height', (d) => Math.max(0, height - m.b - y(d.after)));
  // The difference sits on top of this model's bar, up to the source's: what the pass took from that bin.
  g.filter((d) => d.gone > 0)
    .append('rect')
    .attr('class', 'gone')
    .attr('x', (d) => x(d.from))
    .attr('width', bw)
    .attr('y', (d) => y(d.before))
    .attr('height', (d) => Math.max(1, y(d.after) - y(d.before)));
  // Invisible full-height targets carry the hover readout and the titles.
  g.append('rect')
    .attr('class', 'hit')
    .attr('x', (d) => x(d.from))
    .attr('width', bw)
    .attr('y', m.t)
    .attr('height', height - m.b - m.t)
    .on('mouseenter', (_e, d) => readout.text(tip(d)))
    .on('mouseleave', () => readout.text(''))
    .append('title')
    .text(tip);
  // The source as a step outline over the same bins.
  const path = bins.map((d, i) => `${i === 0 ? `M${x(d.from)},${y(0)}` : ''}V${y(d.before)}H${x(d.to)}`).join('') + `V${y(0)}`;
  svg.append('path').attr('class', 'before-outline').attr('d', path);
  svg.append('g').attr('class', 'axis').attr('transform', `translate(0,${height - m.b})`).call(axisBottom(x).ticks(6));
  svg.append('g').attr('class', 'axis').attr('transform', `translate(${m.l},0)`).call(axisLeft(y).ticks(4, '~s'));
  // Legend: swatch, label and count for each series.
  const legend = [
    { cls: 'bar after', text: `after ${formatCount(total('after'))}` },
    { cls: 'before-outline swatch', text: `before ${formatCount(total('before'))}` },
    { cls: 'gone', text: `${goneLabel} ${formatCount(total('gone'))} (${((100 * total('gone')) / Math.max(1, total('before'))).toFixed(1)}%)` },
  ];
  const lg = svg.append('g').attr('class', 'legend').attr('transform', `translate(${m.l},4)`);
  let at = 0;
  for (const item of legend) {
    const entry = lg.append('g').attr('transform', `translate(${at},0)`);
    entry.append('rect').attr('class', item.cls).attr('width', 10).attr('height', 10);
    entry.append('text').attr('x', 14).attr('y', 9).text(item.text);
    at += 20 + item.text.length * 6;
  }
  svg.attr('data-gone', total('gone')).attr('data-before', total('before')).attr('data-after', total('after'));
  return svg.node()!;
}

/**
 * The source layer's output channels as a strip of rows beside the mask heatmap: removed ones marked, with
 * the count and the removed indices as text (what a screen reader and a keyboard user get).
 */
export function removedChannelsView(channels: number, removed: number[], height = 256): HTMLElement {
  const gone = new Set(removed);
  const width = 56;
  const row = height / Math.max(1, channels);
  const svg = svgRoot('channel-strip', width, height, `${removed.length} of ${channels} output channels removed`);
  svg
    .selectAll('rect')
    .data(Array.from({ length: channels }, (_, i) => i))
    .join('rect')
    .attr('class', (i) => `channel${gone.has(i) ? ' removed' : ' kept'}`)
    .attr('data-channel', (i) => i)
    .attr('x', 0)
    .attr('width', width)
    .attr('y', (i) => i * row)
    .attr('height', Math.max(0.5, row - (row > 3 ? 1 : 0)))
    .append('title')
    .text((i) => `channel ${i}: ${gone.has(i) ? 'removed' : 'kept'}`);
  const list = removed.length > 40 ? `${removed.slice(0, 40).join(', ')}, … (${removed.length - 40} more)` : removed.join(', ');
  return h(
    'div',
    { class: 'removed-channels', id: 'removed-channels', 'data-removed': removed.length, 'data-channels': channels },
    h('div', { class: 'removed-count' }, t('{0} of {1} channels removed', removed.length, channels)),
    svg.node()!,
    h('div', { class: 'muted mono removed-list', tabindex: 0, title: t('removed output channels (source indexing)') }, t('removed: {0}', list)),
  );
}

/** Bars of SQNR in dB, one per item: warn-coloured below `warnDb`; infinite (exact) values reach the end. */
function sqnrBars(cls: string, items: Array<{ label: string; db: number }>, label: string, warnDb: number, labelWidth: number, row: number): SVGSVGElement {
  const width = 460;
  const height = items.length * row + 24;
  const finite = items.map((d) => d.db).filter(Number.isFinite);
  const top = Math.max(warnDb * 2, d3max(finite) ?? 1);
  const x = scaleLinear().domain([Math.min(0, ...finite), top]).range([labelWidth, width - 50]);
  const y = scaleBand<number>().domain(items.map((_, i) => i)).range([0, items.length * row]).padding(0.15);
  const svg = svgRoot(cls, width, height, label);
  const clamp = (db: number) => (Number.isFinite(db) ? db : top);
  const g = svg.selectAll('g.item').data(items).join('g').attr('class', 'item').attr('transform', (_d, i) => `translate(0,${y(i)})`);
  g.append('text').attr('x', labelWidth - 6).attr('y', y.bandwidth() / 2).attr('dy', '0.35em').attr('text-anchor', 'end').text((d) => (d.label.length > 28 ? `…${d.label.slice(-27)}` : d.label));
  g.append('rect')
    .attr('class', (d) => `bar sqnr${d.db < warnDb ? ' warn' : ''}`)
    .attr('data-db', (d) => d.db)
    .attr('x', x(Math.min(0, ...finite)))
    .attr('height', y.bandwidth())
    .attr('width', (d) => Math.max(1, x(clamp(d.db)) - x(Math.min(0, ...finite))))
    .append('title')
    .text((d) => `${d.label}: ${Number.isFinite(d.db) ? `${d.db.toFixed(1)} dB` : 'exact'}${d.db < warnDb ? ` (below ${warnDb} dB)` : ''}`);
  g.append('text').attr('x', (d) => x(clamp(d.db)) + 4).attr('y', y.bandwidth() / 2).attr('dy', '0.35em').text((d) => (Number.isFinite(d.db) ? `${d.db.toFixed(1)} dB` : '∞'));
  svg.append('line').attr('class', 'threshold').attr('x1', x(warnDb)).attr('x2', x(warnDb)).attr('y1', 0).attr('y2', items.length * row);
  svg.append('g').attr('class', 'axis').attr('transform', `translate(0,${items.length * row})`).call(axisBottom(x).ticks(5));
  return svg.node()!;
}

/** Activation SQNR below this many dB is flagged (an int8 tensor that lost more than ~3 bits of its range). */
export const warnDb = 20;

/** The model page's chart of a static-quantized model: activation SQNR against the float model, worst first (top 30). */
export function activationSqnrView(activations: NonNullable<ModelOrigin['activations']>): HTMLElement {
  const items = activations
    .map((a) => ({ label: a.tensor, db: typeof a.sqnrDb === 'number' ? a.sqnrDb : Infinity }))
    .sort((a, b) => a.db - b.db)
    .slice(0, 30);
  const low = items.filter((d) => d.db < warnDb).length;
  return h(
    'section',
    { id: 'activation-sqnr-section' },
    h('h2', {}, t('Activation SQNR against the float model (worst {0} of {1})', items.length, activations.length)),
    h('p', { class: 'muted' }, `${t('Each quantized activation tensor compared with the float model\'s on the calibration data.')} ${low ? t('{0} below {1} dB.', low, warnDb) : t('None below {0} dB.', warnDb)}`),
    sqnrBars('sqnr-chart', items, `Activation SQNR, worst first: ${items.map((d) => `${d.label} ${Number.isFinite(d.db) ? d.db.toFixed(1) : 'exact'} dB`).join('; ')}`, warnDb, 200, 16),
  );
}

/** The per-output-channel weight SQNR of a quantized layer (a small bar chart, channels in order). */
export function channelSqnrSvg(channelSqnrDb: number[]): SVGSVGElement {
  const width = 420;
  const height = 120;
  const m = { l: 40, r: 8, t: 8, b: 20 };
  const finite = channelSqnrDb.filter((v) => v < 999);
  const top = Math.max(warnDb * 2, d3max(finite) ?? 1);
  const x = scaleBand<number>().domain(channelSqnrDb.map((_, i) => i)).range([m.l, width - m.r]).padding(0.1);
  const y = scaleLinear().domain([Math.min(0, ...finite), top]).nice().range([height - m.b, m.t]);
  const svg = svgRoot('channel-sqnr', width, height, `Weight SQNR per output channel: lowest ${finite.length ? Math.min(...finite).toFixed(1) : 'exact'} dB`);
  svg
    .selectAll('rect')
    .data(channelSqnrDb)
    .join('rect')
    .attr('class', (d) => `bar sqnr${d < warnDb ? ' warn' : ''}`)
    .attr('x', (_d, i) => x(i)!)
    .attr('width', Math.max(1, x.bandwidth()))
    .attr('y', (d) => y(Math.min(d, top)))
    .attr('height', (d) => Math.max(1, y(Math.min(0, ...finite)) - y(Math.min(d, top))))
    .append('title')
    .text((d, i) => `channel ${i}: ${d >= 999 ? 'exact' : `${d.toFixed(1)} dB`}`);
  svg.append('line').attr('class', 'threshold').attr('x1', m.l).attr('x2', width - m.r).attr('y1', y(warnDb)).attr('y2', y(warnDb));
  svg.append('g').attr('class', 'axis').attr('transform', `translate(${m.l},0)`).call(axisLeft(y).ticks(4));
  svg.append('text').attr('x', width - m.r).attr('y', height - 4).attr('text-anchor', 'end').attr('class', 'readout').text('output channel →');
  return svg.node()!;
}

/** Marker colours per calibrator, as theme variables (the range actually used is drawn solid and thicker). */
const calibratorClass: Record<string, string> = { minmax: 'cal-minmax', percentile: 'cal-percentile', entropy: 'cal-entropy', mse: 'cal-mse' };

/**
 * The model page's calibration view of a static-quantized model: one activation's calibration histogram (log
 * counts) with the range it was quantized over and the range each calibrator would have chosen as markers.
 * A select picks the tensor, worst expected SQNR first.
 */
export function calibrationRangeView(ranges: NonNullable<ModelOrigin['ranges']>): HTMLElement {
  const sorted = [...ranges].sort((a, b) => a.sqnrDb - b.sqnrDb || a.tensor.localeCompare(b.tensor));
  const slot = h('div', { class: 'calibration-slot' });
  const select = h('select', { id: 'calibration-tensor', title: t('activation tensor') }, ...sorted.map((r, i) => h('option', { value: String(i) }, `${r.tensor} (${formatNumber(r.sqnrDb)} dB)`)));
  const draw = () => slot.replaceChildren(calibrationSvg(sorted[Number((select as HTMLSelectElement).value)]));
  select.addEventListener('change', draw);
  draw();
  return h(
    'section',
    { id: 'calibration-section' },
    h('h2', {}, t('Calibration ranges')),
    h('p', { class: 'muted' }, t('The activation on the calibration data, with the range it was quantized over (solid) and the range each calibrator would choose (dashed). Values beyond the solid lines are clipped.')),
    h('div', { class: 'toolbar' }, h('label', {}, 'activation ', select)),
    // A legend rather than labels on the markers: calibrators often choose nearly the same end.
    h(
      'p',
      { class: 'legend' },
      ...['used', 'minmax', 'percentile', 'entropy', 'mse'].map((name) =>
        h('span', { class: 'legend-item' }, h('span', { class: `legend-line ${name === 'used' ? 'used' : calibratorClass[name]}` }), name === 'used' ? t('range used') : name),
      ),
    ),
    slot,
  );
}

function calibrationSvg(r: NonNullable<ModelOrigin['ranges']>[number]): SVGSVGElement {
  const width = 520;
  const height = 220;
  const m = { l: 48, r: 12, t: 28, b: 24 };
  const hist = r.histogram!;
  const marks = [{ name: 'used', range: r.range }, ...Object.entries(r.calibrators ?? {}).map(([name, range]) => ({ name, range }))];
  const lo = Math.min(hist.lo, ...marks.map((k) => k.range[0]));
  const hi = Math.max(hist.hi, ...marks.map((k) => k.range[1]));
  const x = scaleLinear().domain([lo, hi === lo ? lo + 1 : hi]).range([m.l, width - m.r]);
  const y = scaleSymlog().domain([0, Math.max(1, d3max(hist.counts) ?? 1)]).range([height - m.b, m.t]);
  const bw = (hist.hi - hist.lo) / hist.counts.length;
  const svg = svgRoot('calibration-histogram', width, height, `Calibration histogram of ${r.tensor}: quantized over [${formatNumber(r.range[0])}, ${formatNumber(r.range[1])}], ${(r.clipped * 100).toFixed(3)}% clipped`);
  svg
    .append('g')
    .selectAll('rect')
    .data(hist.counts.map((count, i) => ({ count, from: hist.lo + i * bw, to: hist.lo + (i + 1) * bw })))
    .join('rect')
    .attr('class', (d) => `bar${d.to <= r.range[0] || d.from >= r.range[1] ? ' clipped' : ''}`)
    .attr('x', (d) => x(d.from))
    .attr('width', (d) => Math.max(1, x(d.to) - x(d.from) - 0.5))
    .attr('y', (d) => y(d.count))
    .attr('height', (d) => Math.max(0, height - m.b - y(d.count)))
    .append('title')
    .text((d) => `[${formatNumber(d.from)}, ${formatNumber(d.to)}): ${formatCount(d.count)}`);
  const g = svg.append('g');
  marks.forEach((k) => {
    for (const [end, v] of [['low', k.range[0]], ['high', k.range[1]]] as const) {
      g.append('line')
        .attr('class', `range-marker ${k.name === 'used' ? 'used' : (calibratorClass[k.name] ?? '')}`)
        .attr('data-calibrator', k.name)
        .attr('data-end', end)
        .attr('x1', x(v))
        .attr('x2', x(v))
        .attr('y1', m.t - 4)
        .attr('y2', height - m.b)
        .append('title')
        .text(`${k.name === 'used' ? 'range used' : k.name}: ${end} ${formatNumber(v)}`);
    }
  });
  svg.append('g').attr('class', 'axis').attr('transform', `translate(0,${height - m.b})`).call(axisBottom(x).ticks(6));
  svg.append('g').attr('class', 'axis').attr('transform', `translate(${m.l},0)`).call(axisLeft(y).ticks(4, '~s'));
  return svg.node()!;
}
