import '@vscode-elements/elements/dist/vscode-badge/index.js';
import '@vscode-elements/elements/dist/vscode-button/index.js';
import '@vscode-elements/elements/dist/vscode-progress-ring/index.js';
import { scaleBand, scaleLinear, select } from 'd3';
import type { FromInspectorEvent, InspectorHostRequests, InspectorWebviewRequests, LayerInfo, ModelOrigin, ModelSummary, TileMode, ToInspectorEvent } from '../../src/protocol/inspector';
import { connect, getState, setState } from '../common/api';
import { formatBytes, formatCount, formatNumber, h } from '../common/dom';
import { t } from '../common/l10n';
import type { HeatmapView } from '../common/heatmap';
import { activationSqnrView, calibrationRangeView } from './compare';
import { disposeLayerDetail, showLayerDetail, type LayerDetailHost } from './layerDetail';

/** The Model Inspector: model card, inputs and outputs, op counts, and the layer table. */

type SortKey = 'order' | 'params' | 'sparsity';
interface UiState {
  selected?: string;
  sort: SortKey;
  /** Histogram: log counts, and how many bins. */
  log: boolean;
  bins: number;
  /** Heatmap zoom and pan per weight tensor. */
  views: Record<string, HeatmapView>;
  /** Older state: the heatmap shows the prune mask (kept vs zero weights) instead of values. */
  mask?: boolean;
  /** What the heatmap shows: values, the prune mask or the quantization error. */
  heatmapMode?: TileMode;
}

const app = document.getElementById('app')!;
let ui = getState<UiState>({ sort: 'order', log: false, bins: 64, views: {} });

const detailHost: LayerDetailHost = {
  histogram: (layer, tensor, bins, opts) => rpc.request('getHistogram', { layer, ...(tensor ? { tensor } : {}), bins, ...opts }),
  tile: (tensor, req) => rpc.request('getTile', { tensor, ...req }),
  quantError: (layer) => rpc.request('getQuantError', { layer }),
  origin: () => origin,
  state: () => ui,
  update: (patch) => {
    ui = { ...ui, ...patch };
    setState(ui);
  },
};
let summary: ModelSummary | undefined;
/** Where Whittle made this model from (null: not a model Whittle wrote, or its source is gone). */
let origin: ModelOrigin | null = null;

const rpc = connect<InspectorHostRequests, InspectorWebviewRequests, FromInspectorEvent, ToInspectorEvent>({}, (event) => {
  switch (event.type) {
    case 'modelChanged':
      void load();
      break;
    default: {
      const never: never = event.type;
      void never;
    }
  }
});

async function load(): Promise<void> {
  app.setAttribute('aria-busy', 'true');
  app.replaceChildren(h('p', {}, h('vscode-progress-ring'), ' Reading the model…'));
  try {
    // An origin that cannot be read only means no comparison: the model page still opens.
    const [s, o] = await Promise.all([rpc.request('getSummary', {}), rpc.request('getOrigin', {}).catch(() => null)]);
    summary = s;
    origin = o;
    render(summary);
  } catch (err) {
    app.replaceChildren(h('h1', {}, t('Cannot open this model')), h('p', { class: 'error', id: 'error' }, (err as Error).message));
  } finally {
    app.removeAttribute('aria-busy');
  }
}

function render(s: ModelSummary): void {
  const name = s.file.split(/[\\/]/).pop() ?? s.file;
  const layerParams = (l: LayerInfo) => l.weights.reduce((a, w) => a + w.params, 0);
  app.replaceChildren(
    h('h1', {}, name),
    h('div', { class: 'muted mono', id: 'model-file' }, s.file),
    ...(origin ? [originBanner(origin)] : []),
    h(
      'div',
      { class: 'badges' },
      h('vscode-badge', {}, s.format.toUpperCase()),
      h('vscode-badge', {}, `IR ${s.irVersion}`),
      ...Object.entries(s.opsets).map(([d, v]) => h('vscode-badge', {}, `${d} v${v}`)),
      s.producer ? h('vscode-badge', {}, s.producer) : null,
    ),
    h(
      'div',
      { class: 'cards' },
      card(t('Parameters'), formatCount(s.params), 'params'),
      card(t('Weight bytes'), formatBytes(s.bytes), 'weight-bytes'),
      card(t('File size'), formatBytes(s.fileBytes), 'file-bytes'),
      card(t('Nodes'), formatCount(s.nodes), 'nodes'),
      card(t('Weight-bearing layers'), formatCount(s.layers.length), 'layer-count'),
    ),
    h(
      'div',
      { class: 'toolbar' },
      h('vscode-button', { onclick: () => rpc.sendEvent({ type: 'runCommand', command: 'whittle.compress' }) }, t('Compress…')),
      h('vscode-button', { secondary: true, onclick: () => rpc.sendEvent({ type: 'runCommand', command: 'whittle.analyzeSensitivity' }) }, t('Analyze sensitivity')),
      h('vscode-button', { secondary: true, onclick: () => rpc.sendEvent({ type: 'runCommand', command: 'whittle.prune' }) }, t('Prune…')),
    ),
    ...s.warnings.map((w) => h('p', { class: 'warning' }, `⚠ ${w}`)),
    h(
      'div',
      { class: 'two-col' },
      h('section', {}, h('h2', {}, t('Inputs')), ioTable(s.inputs), h('h2', {}, t('Outputs')), ioTable(s.outputs)),
      h('section', {}, h('h2', {}, t('Operators')), opChart(s.opCounts)),
    ),
    ...(origin?.activations?.length ? [activationSqnrView(origin.activations)] : []),
    ...(origin?.ranges?.length ? [calibrationRangeView(origin.ranges)] : []),
    h('h2', {}, `Layers (${s.layers.length})`),
    layerTable(s.layers, layerParams),
    h('div', { id: 'layer-detail' }, h('p', { class: 'muted' }, t('Click a layer to see its weight histogram, per-channel ranges and heatmap.'))),
  );
  disposeLayerDetail();
  const selected = s.layers.find((l) => l.name === ui.selected);
  if (selected) showLayerDetail(document.getElementById('layer-detail')!, selected, detailHost);
}

/** Says which model this one was made from, and how. */
function originBanner(o: ModelOrigin): HTMLElement {
  const name = o.source.split(/[\\/]/).pop() ?? o.source;
  return h(
    'div',
    { class: 'origin-banner', id: 'origin-banner', role: 'note', 'data-pass': o.pass },
    t('Written by Whittle from') + ' ',
    h('span', { class: 'mono', title: o.source }, name),
    ` — ${o.summary}. ${t('Layer details compare each layer with the source.')}`,
  );
}

function card(label: string, value: string, id: string): HTMLElement {
  return h('div', { class: 'card' }, h('div', { class: 'value', id }, value), h('div', { class: 'label' }, label));
}

function ioTable(list: ModelSummary['inputs']): HTMLElement {
  return h(
    'table',
    {},
    h('thead', {}, h('tr', {}, h('th', {}, t('Name')), h('th', {}, t('Type')), h('th', {}, t('Shape')))),
    h(
      'tbody',
      {},
      ...list.map((io) =>
        h('tr', {}, h('td', { class: 'mono' }, io.name), h('td', {}, io.dtype), h('td', { class: 'mono' }, io.shape ? `[${io.shape.map((d) => d ?? '?').join(', ')}]` : '?')),
      ),
    ),
  );
}

function opChart(counts: Record<string, number>): SVGSVGElement {
  const data = Object.entries(counts).sort((a, b) => b[1] - a[1]);
  const row = 18;
  const width = 360;
  const labelWidth = 130;
  const height = data.length * row + 4;
  const x = scaleLinear().domain([0, Math.max(1, ...data.map((d) => d[1]))]).range([0, width - labelWidth - 40]);
  const y = scaleBand().domain(data.map((d) => d[0])).range([0, data.length * row]).padding(0.2);
  const svg = select(document.createElementNS('http://www.w3.org/2000/svg', 'svg'))
    .attr('id', 'op-chart')
    .attr('viewBox', `0 0 ${width} ${height}`)
    .attr('width', width)
    .attr('height', height)
    .attr('role', 'img')
    .attr('aria-label', t('Node count by operator'));
  const g = svg.selectAll('g').data(data).join('g').attr('transform', (d) => `translate(0,${y(d[0])})`);
  g.append('text').attr('x', labelWidth - 6).attr('y', y.bandwidth() / 2).attr('dy', '0.35em').attr('text-anchor', 'end').text((d) => d[0]);
  g.append('rect').attr('class', 'bar').attr('x', labelWidth).attr('height', y.bandwidth()).attr('width', (d) => Math.max(1, x(d[1])));
  g.append('text').attr('x', (d) => labelWidth + x(d[1]) + 4).attr('y', y.bandwidth() / 2).attr('dy', '0.35em').text((d) => d[1]);
  return svg.node()!;
}

function layerTable(layers: LayerInfo[], params: (l: LayerInfo) => number): HTMLElement {
  const sorted = [...layers];
  const first = (l: LayerInfo) => l.weights[0];
  if (ui.sort === 'params') sorted.sort((a, b) => params(b) - params(a));
  if (ui.sort === 'sparsity') sorted.sort((a, b) => (first(b)?.sparsity ?? 0) - (first(a)?.sparsity ?? 0));
  const sortHeader = (label: string, key: SortKey) =>
    h('th', { class: 'num sortable', title: t('sort by {0}', label.toLowerCase()), onclick: () => resort(key) }, label + (ui.sort === key ? ' ▾' : ''));
  return h(
    'div',
    { class: 'table-wrap' },
    h(
      'table',
      { id: 'layers' },
      h(
        'thead',
        {},
        h(
          'tr',
          {},
          h('th', { class: 'sortable', onclick: () => resort('order') }, t('Layer') + (ui.sort === 'order' ? ' ▾' : '')),
          h('th', {}, t('Op')),
          h('th', {}, t('Weight shape')),
          h('th', {}, 'dtype'),
          sortHeader(t('Params'), 'params'),
          h('th', { class: 'num' }, t('Bytes')),
          sortHeader(t('Sparsity'), 'sparsity'),
          h('th', { class: 'num' }, 'Min'),
          h('th', { class: 'num' }, 'Max'),
          h('th', { class: 'num' }, 'Mean'),
          h('th', { class: 'num' }, 'Std'),
        ),
      ),
      h(
        'tbody',
        {},
        ...sorted.map((l) => {
          const w = first(l);
          return h(
            'tr',
            { class: `layer${ui.selected === l.name ? ' selected' : ''}`, 'data-layer': l.name, onclick: (e: Event) => selectLayer(l.name, e.timeStamp) },
            h('td', { class: 'mono' }, l.name),
            h('td', {}, l.op),
            h('td', { class: 'mono' }, l.weights.map((x) => `[${x.shape.join('×')}]`).join(' ')),
            h('td', {}, w?.dtype ?? ''),
            h('td', { class: 'num' }, formatCount(params(l))),
            h('td', { class: 'num' }, formatBytes(l.weights.reduce((a, x) => a + x.bytes, 0))),
            h('td', { class: 'num' }, w ? sparsityBar(w.sparsity) : ''),
            h('td', { class: 'num' }, formatNumber(w?.min)),
            h('td', { class: 'num' }, formatNumber(w?.max)),
            h('td', { class: 'num' }, formatNumber(w?.mean)),
            h('td', { class: 'num' }, formatNumber(w?.std)),
          );
        }),
      ),
    ),
  );
}

/** The share of zero weights as a bar with its percentage, so pruned layers stand out in the table. */
function sparsityBar(sparsity: number): HTMLElement {
  const pct = `${(sparsity * 100).toFixed(1)}%`;
  const fill = h('span', { class: 'sparsity-fill' });
  fill.style.width = `${Math.max(0, Math.min(100, sparsity * 100))}%`;
  return h('span', { class: 'sparsity-cell', title: t('{0} of the weights are zero', pct) }, h('span', { class: 'sparsity-bar', 'data-sparsity': sparsity }, fill), h('span', { class: 'sparsity-label' }, pct));
}

function resort(key: SortKey): void {
  ui = { ...ui, sort: key };
  setState(ui);
  if (summary) render(summary);
}

function selectLayer(name: string, startedAt = performance.now()): void {
  ui = { ...ui, selected: name };
  setState(ui);
  rpc.sendEvent({ type: 'layerSelected', name });
  for (const tr of document.querySelectorAll('tr.layer')) tr.classList.toggle('selected', tr.getAttribute('data-layer') === name);
  const layer = summary?.layers.find((l) => l.name === name);
  if (layer) showLayerDetail(document.getElementById('layer-detail')!, layer, detailHost, startedAt);
}

void load();
