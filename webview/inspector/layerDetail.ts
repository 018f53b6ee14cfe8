import { axisBottom, axisLeft, axisRight, line, max as d3max, scaleLinear, scaleSymlog, select } from 'd3';
import type { LayerHistogram, LayerInfo, ModelOrigin, QuantErrorSummary, TensorTile, TileMode } from '../../src/protocol/inspector';
import { Heatmap, type HeatmapView } from '../common/heatmap';
import { formatCount, formatNumber, h } from '../common/dom';
import { t } from '../common/l10n';
import { channelSqnrSvg, compareHistogramSvg, removedChannelsView } from './compare';

/** The inspector's layer detail: histogram, per-channel ranges and the weight heatmap of the selected layer. */

/** What the detail needs from the page: the host's answers and the UI state it keeps. */
export interface LayerDetailHost {
  /** A histogram of this model's layer (`range`: over fixed bins), or with `of` 'source' of the same layer in the source model. */
  histogram(layer: string, tensor: string | undefined, bins: number, opts?: { range?: [number, number]; of?: 'source' }): Promise<LayerHistogram>;
  tile(tensor: string, req: { row: number; col: number; rows: number; cols: number; stride: number; mode?: TileMode }): Promise<TensorTile>;
  quantError(layer: string): Promise<QuantErrorSummary>;
  /** Where Whittle made this model from, when it did. */
  origin(): ModelOrigin | null;
  state(): DetailState;
  update(patch: Partial<DetailState>): void;
}

/** The detail's UI state: histogram log and bins, heatmap views per tensor, and what the heatmap shows. */
export interface DetailState {
  log: boolean;
  bins: number;
  views: Record<string, HeatmapView>;
  /** Older state: the heatmap showed the prune mask. */
  mask?: boolean;
  heatmapMode?: TileMode;
}

const svgNs = 'http://www.w3.org/2000/svg';
let current: { heatmap?: Heatmap; layer: string } | undefined;

/** The weight seen as a matrix: output channels by everything else (MatMul weights are [in, out]). */
export function matrixDims(layer: LayerInfo): { rows: number; cols: number } {
  // The engine says how it tiles the weight (its output axis, MatMulNBits' [K, N]); older summaries lack it.
  if (layer.matrix) return layer.matrix;
  const shape = layer.weights[0]?.shape ?? [1];
  const total = shape.reduce((a, b) => a * b, 1);
  const axis = layer.op === 'MatMul' && shape.length >= 2 ? shape.length - 1 : layer.op === 'ConvTranspose' ? 1 : 0;
  const rows = shape.length ? shape[axis] : 1;
  return { rows, cols: Math.max(1, total / Math.max(1, rows)) };
}

/** A layer whose weight is stored as integer codes or fp16, so it has a quantization error against its float source. */
export function isQuantizedLayer(layer: LayerInfo): boolean {
  return layer.op === 'com.microsoft:MatMulNBits' || /^(u?int(8|4)|float16)$/.test(layer.weights[0]?.dtype ?? '');
}

const modeLabels = (): Record<TileMode, string> => ({ values: t('values'), mask: t('prune mask'), error: t('quantization error') });

/** Renders the detail of `layer` into `root`, replacing what was there. */
export function showLayerDetail(root: HTMLElement, layer: LayerInfo, host: LayerDetailHost, startedAt = performance.now()): void {
  current?.heatmap?.dispose();
  const weight = layer.weights[0];
  if (!weight) {
    root.replaceChildren(h('p', { class: 'muted' }, t('{0} has no weights.', layer.name)));
    current = undefined;
    return;
  }
  const me: { heatmap?: Heatmap; layer: string } = { layer: layer.name };
  current = me;
  const origin = host.origin();
  const errorAvailable = origin?.pass === 'quantize' && isQuantizedLayer(layer);
  const modes: TileMode[] = ['values', 'mask', ...(errorAvailable ? ['error' as const] : [])];
  const saved = host.state().heatmapMode ?? (host.state().mask ? 'mask' : 'values');
  const initial: TileMode = modes.includes(saved) ? saved : 'values';
  const { rows, cols } = matrixDims(layer);
  // The mask view asks for kept fractions per block: a block mean of values would hide zeros among large weights.
  // The error view's tiles are of the layer (dequantized minus the source's weight), so they go by its name.
  const makeHeatmap = (mode: TileMode) =>
    new Heatmap({
      rows,
      cols,
      rowLabel: 'out',
      colLabel: 'in',
      scale: mode === 'mask' ? 'mask' : 'diverging',
      view: host.state().views[weight.name],
      tile: (req) => (mode === 'error' ? host.tile(layer.name, { ...req, mode }) : host.tile(weight.name, mode === 'mask' ? { ...req, mode } : req)),
      onViewChange: (view) => host.update({ views: { ...host.state().views, [weight.name]: view } }),
    });
  // The heatmap first: its overview tile is what the user waits for, so it goes to the worker ahead of the histogram.
  const heatmap = makeHeatmap(initial);
  me.heatmap = heatmap;
  const canvas = heatmap.element.querySelector('canvas')!;
  canvas.dataset.mode = initial;
  // The time from the click to the first drawn tile, for the e2e timing check.
  new MutationObserver((_m, obs) => {
    if (canvas.dataset.drawn) {
      canvas.dataset.firstDrawMs = String(Math.round(performance.now() - startedAt));
      obs.disconnect();
    }
  }).observe(canvas, { attributes: true, attributeFilter: ['data-drawn'] });
  const heatSlot = h('div', { class: 'heatmap-slot' }, heatmap.element);
  const errorSlot = h('div', { class: 'quant-error-slot', id: 'quant-error' });
  const removed = origin?.removedRows?.[layer.name];
  const stripSlot = h('div', { class: 'strip-slot' });
  const modeSelect = h(
    'select',
    { id: 'heatmap-mode', 'aria-label': t('what the heatmap shows') },
    ...modes.map((m) => h('option', { value: m, selected: m === initial }, modeLabels()[m])),
  );
  const showMode = (mode: TileMode) => {
    if (current !== me) return;
    host.update({ heatmapMode: mode, mask: mode === 'mask' });
    me.heatmap?.dispose();
    me.heatmap = makeHeatmap(mode);
    me.heatmap.element.querySelector('canvas')!.dataset.mode = mode;
    heatSlot.replaceChildren(me.heatmap.element);
    if (mode === 'error') loadError();
    else errorSlot.replaceChildren();
  };
  modeSelect.addEventListener('change', () => showMode(modeSelect.value as TileMode));
  const loadError = () => {
    errorSlot.replaceChildren(h('p', { class: 'muted' }, t('Measuring the quantization error…')));
    host.quantError(layer.name).then(
      (e) => {
        if (current !== me) return;
        errorSlot.replaceChildren(
          h(
            'div',
            { class: 'quant-error-stats mono', id: 'quant-error-stats' },
            `${e.format} · SQNR ${e.sqnrDb >= 999 ? 'exact' : `${e.sqnrDb.toFixed(1)} dB`} · max |error| ${formatNumber(e.maxAbs)}`,
          ),
          h('div', { class: 'muted' }, t('Weight SQNR per output channel (dB); the line marks 20 dB')),
          channelSqnrSvg(e.channelSqnrDb),
        );
      },
      (err: Error) => {
        if (current === me) errorSlot.replaceChildren(h('p', { class: 'error' }, t('Cannot measure the quantization error: {0}', err.message)));
      },
    );
  };

  const histSlot = h('div', { class: 'histogram-slot' }, t('Computing the histogram…'));
  const channelSlot = h('div', { class: 'channel-slot' });
  const stats = h('div', { class: 'layer-stats mono muted' });
  const binsSelect = h(
    'select',
    { id: 'histogram-bins', title: t('bins'), 'aria-label': t('histogram bins') },
    ...[16, 32, 64, 128, 256].map((n) => h('option', { value: n, selected: n === host.state().bins }, t('{0} bins', n))),
  );
  const logBox = h('input', { type: 'checkbox', id: 'histogram-log', checked: host.state().log });
  root.replaceChildren(
    h('h2', {}, t('Layer') + ' ', h('span', { class: 'mono' }, layer.name), h('span', { class: 'muted' }, ` · ${layer.op} · ${weight.name} [${weight.shape.join('×')}] · ${t('{0} values', formatCount(weight.params))}`)),
    stats,
    h(
      'div',
      { class: 'two-col' },
      h(
        'section',
        {},
        h('h3', {}, origin ? t('Histogram: before (source, outline) and after (this model, filled)') : t('Histogram')),
        h('div', { class: 'toolbar' }, h('label', {}, logBox, ' ' + t('log count')), binsSelect),
        histSlot,
      ),
      h('section', {}, h('h3', {}, t('Per output channel: min–max and L2 norm')), channelSlot),
    ),
    h('h3', {}, t('Heatmap: {0} out-channels × {1} (the rest, flattened)', rows, cols)),
    h('div', { class: 'toolbar' }, h('label', { for: 'heatmap-mode' }, t('show') + ' '), modeSelect),
    h('div', { class: 'heatmap-row' }, heatSlot, stripSlot),
    errorSlot,
  );
  if (initial === 'error') loadError();

  let hist: LayerHistogram | undefined;
  let pair: { before: LayerHistogram; after: LayerHistogram } | undefined;
  const drawHist = () => {
    if (!hist || current !== me) return;
    let chart: SVGSVGElement = histogramSvg(hist, host.state().log);
    if (pair && origin) {
      try {
        chart = compareHistogramSvg(pair.before, pair.after, host.state().log, origin.pass);
      } catch {
        // Bins that do not line up: the plain histogram is still right.
      }
    }
    histSlot.replaceChildren(chart);
  };
  const load = () => {
    const bins = host.state().bins;
    // With an origin: the source's histogram first, then this model's; then both again over one range
    // that covers both, so that the bars line up bin for bin.
    const source = origin ? host.histogram(layer.name, undefined, bins, { of: 'source' }).catch(() => undefined) : Promise.resolve(undefined);
    source
      .then(async (src) => {
        const res = await host.histogram(layer.name, weight.name, bins);
        if (current !== me) return;
        hist = res;
        stats.textContent = [
          res.storedAs ? `stored as ${res.storedAs}, shown dequantized` : undefined,
          `min ${formatNumber(res.min)}`,
          `max ${formatNumber(res.max)}`,
          `mean ${formatNumber(res.mean)}`,
          `std ${formatNumber(res.std)}`,
          `|mean| ${formatNumber(res.absMean)}`,
          `sparsity ${(res.sparsity * 100).toFixed(2)}%`,
          `p1 ${formatNumber(res.percentiles.p1)}`,
          `p50 ${formatNumber(res.percentiles.p50)}`,
          `p99 ${formatNumber(res.percentiles.p99)}`,
        ]
          .filter(Boolean)
          .join(' · ');
        channelSlot.replaceChildren(channelSvg(res));
        if (removed && src) stripSlot.replaceChildren(removedChannelsView(src.channels.min.length, removed));
        if (!src) return drawHist();
        const range: [number, number] = [Math.min(src.min, res.min), Math.max(src.max, res.max)];
        if (!(range[1] > range[0])) return drawHist();
        const [before, after] = await Promise.all([
          range[0] === src.min && range[1] === src.max ? Promise.resolve(src) : host.histogram(layer.name, undefined, bins, { of: 'source', range }),
          host.histogram(layer.name, weight.name, bins, { range }),
        ]);
        if (current !== me) return;
        pair = { before, after };
        drawHist();
      })
      .catch((err: Error) => {
        if (current === me) histSlot.replaceChildren(h('p', { class: 'error' }, t('Cannot compute the histogram: {0}', err.message)));
      });
  };
  logBox.addEventListener('change', () => {
    host.update({ log: logBox.checked });
    drawHist();
  });
  binsSelect.addEventListener('change', () => {
    host.update({ bins: Number(binsSelect.value) });
    pair = undefined;
    load();
  });
  load();
}

/** Stops the current detail's tile requests (the layer table re-rendered). */
export function disposeLayerDetail(): void {
  current?.heatmap?.dispose();
  current = undefined;
}

function histogramSvg(hist: LayerHistogram, log: boolean): SVGSVGElement {
  const width = 420;
  const height = 200;
  const m = { l: 48, r: 8, t: 8, b: 24 };
  const lo = hist.edges[0];
  const hi = hist.edges[hist.edges.length - 1];
  const x = scaleLinear().domain([lo, hi === lo ? lo + 1 : hi]).range([m.l, width - m.r]);
  const top = Math.max(1, d3max(hist.counts) ?? 1);
  // symlog keeps empty bins at 0 while spreading small counts out.
  const y = (log ? scaleSymlog() : scaleLinear()).domain([0, top]).range([height - m.b, m.t]);
  const svg = select(document.createElementNS(svgNs, 'svg'))
    .attr('class', 'histogram')
    .attr('viewBox', `0 0 ${width} ${height}`)
    .attr('width', width)
    .attr('height', height)
    .attr('role', 'img')
    .attr('aria-label', `Histogram of ${hist.tensor}`);
  const readout = svg.append('text').attr('class', 'readout').attr('x', width - m.r).attr('y', m.t + 10).attr('text-anchor', 'end');
  const bins = hist.counts.map((count, i) => ({ count, from: hist.edges[i], to: hist.edges[i + 1] }));
  svg
    .append('g')
    .selectAll('rect')
    .data(bins)
    .join('rect')
    .attr('class', 'bar')
    .attr('x', (d) => x(d.from))
    .attr('width', (d) => Math.max(1, x(d.to) - x(d.from) - 0.5))
    .attr('y', (d) => y(d.count))
    .attr('height', (d) => Math.max(0, height - m.b - y(d.count)))
    .on('mouseenter', (_e, d) => readout.text(`[${formatNumber(d.from)}, ${formatNumber(d.to)}): ${formatCount(d.count)}`))
    .on('mouseleave', () => readout.text(''))
    .append('title')
    .text((d) => `[${formatNumber(d.from)}, ${formatNumber(d.to)}): ${formatCount(d.count)}`);
  svg.append('g').attr('class', 'axis').attr('transform', `translate(0,${height - m.b})`).call(axisBottom(x).ticks(6));
  svg.append('g').attr('class', 'axis').attr('transform', `translate(${m.l},0)`).call(axisLeft(y).ticks(4, log ? '~s' : '~s'));
  return svg.node()!;
}

function channelSvg(hist: LayerHistogram): SVGSVGElement {
  const { min, max, l2 } = hist.channels;
  const n = min.length;
  const width = 420;
  const height = 200;
  const m = { l: 48, r: 48, t: 8, b: 24 };
  const x = scaleLinear().domain([0, Math.max(1, n)]).range([m.l, width - m.r]);
  const y = scaleLinear().domain([Math.min(0, ...min), Math.max(0, ...max)]).nice().range([height - m.b, m.t]);
  const y2 = scaleLinear().domain([0, Math.max(1e-12, ...l2)]).nice().range([height - m.b, m.t]);
  const svg = select(document.createElementNS(svgNs, 'svg'))
    .attr('class', 'channel-plot')
    .attr('viewBox', `0 0 ${width} ${height}`)
    .attr('width', width)
    .attr('height', height)
    .attr('role', 'img')
    .attr('aria-label', `Per-channel ranges of ${hist.tensor}`);
  const readout = svg.append('text').attr('class', 'readout').attr('x', width - m.r).attr('y', m.t + 10).attr('text-anchor', 'end');
  const bw = Math.max(1, (width - m.l - m.r) / Math.max(1, n) - 1);
  svg
    .append('g')
    .selectAll('rect')
    .data(min.map((lo, i) => ({ i, lo, hi: max[i], l2: l2[i], l1: hist.channels.l1[i] })))
    .join('rect')
    .attr('class', 'range')
    .attr('x', (d) => x(d.i))
    .attr('width', bw)
    .attr('y', (d) => y(d.hi))
    .attr('height', (d) => Math.max(1, y(d.lo) - y(d.hi)))
    .on('mouseenter', (_e, d) => readout.text(`channel ${d.i}: [${formatNumber(d.lo)}, ${formatNumber(d.hi)}] L2 ${formatNumber(d.l2)}`))
    .on('mouseleave', () => readout.text(''))
    .append('title')
    .text((d) => `channel ${d.i}: min ${formatNumber(d.lo)}, max ${formatNumber(d.hi)}, L1 ${formatNumber(d.l1)}, L2 ${formatNumber(d.l2)}`);
  svg
    .append('path')
    .attr('class', 'norm')
    .attr('d', line<number>((v, i) => x(i) + bw / 2, (v) => y2(v))(l2) ?? '');
  svg.append('g').attr('class', 'axis').attr('transform', `translate(0,${height - m.b})`).call(axisBottom(x).ticks(Math.min(8, n)));
  svg.append('g').attr('class', 'axis').attr('transform', `translate(${m.l},0)`).call(axisLeft(y).ticks(4));
  svg.append('g').attr('class', 'axis norm-axis').attr('transform', `translate(${width - m.r},0)`).call(axisRight(y2).ticks(4));
  return svg.node()!;
}
