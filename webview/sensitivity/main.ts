import '@vscode-elements/elements/dist/vscode-button/index.js';
import { axisBottom, axisLeft, line, scaleLinear, scalePoint, select } from 'd3';
import type { AnalysisSidecar, LayerChoice, LayerSensitivity } from '../../src/protocol/sensitivity';
import type { FromSensitivityEvent, SensitivityHostRequests, SensitivityRequests, ShowModelEvent, ToSensitivityEvent } from '../../src/protocol/sensitivity';
import { connect, getState, setState } from '../common/api';
import { formatCount, formatNumber, h } from '../common/dom';
import { t } from '../common/l10n';

/**
 * The Layer Sensitivity side-bar view: pick data and kind, run, and watch per-layer sweeps arrive: curves
 * (metric vs sparsity, metric vs bits), a ranked table with per-layer choices, and a heat table.
 */

document.body.classList.add('sidebar');
const app = document.getElementById('app')!;

interface UiState {
  data: string;
  path: string;
  kind: 'both' | 'prune' | 'quant';
  limit: number;
  hovered?: string;
}
let ui = getState<UiState>({ data: 'random', path: '', kind: 'both', limit: 64 });
const save = (patch: Partial<UiState>) => {
  ui = { ...ui, ...patch };
  setState(ui);
};

let model: ShowModelEvent['model'] = null;
let selected: string | undefined;
let running = false;
let status = '';
let statusClass = 'muted';
let warnings: string[] = [];
/** Layers with results, live during a run, else from the sidecar. */
let layers = new Map<string, LayerSensitivity>();
let ranking: string[] | undefined;
let choices: AnalysisSidecar['choices'] = {};
let hasAnalysis = false;

const palette = ['blue', 'red', 'green', 'orange', 'purple', 'yellow'].map((c) => `var(--vscode-charts-${c})`);

const rpc = connect<SensitivityHostRequests, SensitivityRequests, FromSensitivityEvent, ToSensitivityEvent>({}, (event) => {
  switch (event.type) {
    case 'showModel':
      model = event.model;
      selected = event.selected;
      running = !!event.running;
      loadAnalysis(event.analysis ?? undefined);
      render();
      break;
    case 'runStarted':
      if (event.file !== model?.file) return;
      running = true;
      layers = new Map();
      ranking = undefined;
      warnings = [];
      status = t('Starting: {0} sweeps on {1}…', event.kind, event.data === 'random' ? t('random inputs') : event.data);
      statusClass = 'muted';
      render();
      break;
    case 'layerResult':
      if (event.file !== model?.file) return;
      layers.set(event.layer.name, event.layer);
      status = t('{0} of {1} layers done', event.done, event.total);
      render();
      break;
    case 'runProgress':
      if (event.file !== model?.file) return;
      status = `${event.fraction !== undefined ? `${Math.round(event.fraction * 100)}% · ` : ''}${event.message}`;
      updateStatus();
      break;
    case 'runFinished':
      if (event.file !== model?.file) return;
      running = false;
      if (event.analysis) {
        loadAnalysis(event.analysis);
        status = t('Done: {0} samples, {1}; saved to {2}', event.analysis.result.baseline.samples, event.analysis.result.baseline.metricName, event.sidecar ?? '');
        statusClass = 'muted';
      } else if (event.cancelled) {
        status = t('Cancelled.');
        statusClass = 'warning';
      } else {
        status = t('Failed: {0}', String(event.error));
        statusClass = 'error';
      }
      render();
      break;
    default: {
      const never: never = event;
      void never;
    }
  }
});

function loadAnalysis(a: AnalysisSidecar | undefined): void {
  hasAnalysis = !!a;
  layers = new Map((a?.result.layers ?? []).map((l) => [l.name, l]));
  ranking = a?.result.ranking;
  choices = a?.choices ?? {};
  warnings = a?.result.warnings ?? [];
}

/** Most sensitive first: the final ranking when there is one, else by score so far. */
function ranked(): LayerSensitivity[] {
  if (ranking) return ranking.map((n) => layers.get(n)).filter((l): l is LayerSensitivity => !!l);
  return [...layers.values()].sort((a, b) => b.score - a.score);
}

function updateStatus(): void {
  const el = document.getElementById('run-status');
  if (el) {
    el.textContent = status;
    el.className = `progress-line ${statusClass}`;
  }
}

function render(): void {
  app.removeAttribute('aria-busy');
  if (!model) {
    app.replaceChildren(h('p', { class: 'muted' }, t('Open a model in the Whittle Model Inspector to analyse its layers here.')));
    return;
  }
  const m = model;
  const colour = new Map(m.layers.map((l, i) => [l.name, palette[i % palette.length]]));
  const list = ranked();
  app.replaceChildren(
    h('div', {}, h('strong', {}, m.name), h('span', { class: 'muted' }, ` · ${t('{0} parameters', formatCount(m.params))} · ${t('{0} layers', m.layers.length)}`)),
    runForm(m.file),
    h('div', { id: 'run-status', class: `progress-line ${statusClass}` }, status),
    ...warnings.map((w) => h('p', { class: 'warning' }, `⚠ ${w}`)),
    list.length ? rankingTable(m.file, list, colour) : layerList(m),
  );
  if (list.length) app.append(h('div', {}, curves('prune', list, colour), curves('quant', list, colour), heatTable(list)));
}

function runForm(file: string): HTMLElement {
  const data = h('select', { id: 'sensitivity-data' }, h('option', { value: 'random', selected: ui.data === 'random' }, t('Random inputs')), h('option', { value: 'file', selected: ui.data === 'file' }, t('File or folder…')));
  const pathInput = h('input', { type: 'text', id: 'sensitivity-data-path', value: ui.path, placeholder: t('manifest, image folder, idx, npy/npz, pb folder') });
  const browse = h('vscode-button', { secondary: true, id: 'sensitivity-browse' }, t('Browse…'));
  const pathRow = h('div', { class: 'form-row' }, pathInput, browse);
  pathRow.hidden = ui.data !== 'file';
  data.addEventListener('change', () => {
    save({ data: data.value });
    pathRow.hidden = data.value !== 'file';
  });
  pathInput.addEventListener('change', () => save({ path: pathInput.value }));
  browse.addEventListener('click', () => {
    void rpc.request('pickData', {}).then((p) => {
      if (p) {
        pathInput.value = p;
        save({ path: p });
      }
    });
  });
  const kind = h(
    'select',
    { id: 'sensitivity-kind' },
    ...(['both', 'prune', 'quant'] as const).map((k) => h('option', { value: k, selected: ui.kind === k }, k === 'both' ? t('Pruning and quantization') : k === 'prune' ? t('Pruning') : t('Quantization'))),
  );
  kind.addEventListener('change', () => save({ kind: kind.value as UiState['kind'] }));
  const limit = h('input', { type: 'number', id: 'sensitivity-limit', min: 1, value: ui.limit, title: t('samples') });
  limit.addEventListener('change', () => save({ limit: Math.max(1, Number(limit.value) || 1) }));
  const runButton = h('vscode-button', { id: 'sensitivity-run', disabled: running }, t('Run'));
  runButton.addEventListener('click', () => {
    if (running) return;
    const spec = ui.data === 'random' ? 'random' : ui.path.trim();
    if (!spec) {
      status = t('Pick the data first.');
      statusClass = 'error';
      updateStatus();
      return;
    }
    rpc.sendEvent({ type: 'analyze', file, data: spec, kind: ui.kind, limit: ui.limit });
  });
  const cancel = h('vscode-button', { id: 'sensitivity-cancel', secondary: true, disabled: !running }, t('Cancel'));
  cancel.addEventListener('click', () => rpc.sendEvent({ type: 'cancel' }));
  return h(
    'div',
    { class: 'run-form' },
    h('div', { class: 'form-row' }, h('label', { for: 'sensitivity-data' }, t('Data')), data),
    pathRow,
    h('div', { class: 'form-row' }, h('label', { for: 'sensitivity-kind' }, t('Sweep')), kind),
    h('div', { class: 'form-row' }, h('label', { for: 'sensitivity-limit' }, t('Samples')), limit),
    h('div', { class: 'toolbar' }, runButton, cancel),
  );
}

function layerList(m: NonNullable<ShowModelEvent['model']>): HTMLElement {
  return h(
    'table',
    { id: 'sensitivity-layers' },
    h('thead', {}, h('tr', {}, h('th', {}, t('Layer')), h('th', {}, t('Op')), h('th', { class: 'num' }, t('Params')))),
    h(
      'tbody',
      {},
      ...m.layers.map((l) =>
        h('tr', { class: l.name === selected ? 'selected' : undefined }, h('td', { class: 'mono' }, l.name), h('td', {}, l.op), h('td', { class: 'num' }, formatCount(l.params))),
      ),
    ),
  );
}

function rankingTable(file: string, list: LayerSensitivity[], colour: Map<string, string>): HTMLElement {
  const canChoose = hasAnalysis && !running;
  const setChoice = (layer: string, choice: LayerChoice | null) => {
    rpc.request('setChoice', { file, layer, choice }).then(
      (next) => {
        choices = next;
        render();
      },
      (err: Error) => {
        status = t('Cannot save the choice: {0}', err.message);
        statusClass = 'error';
        updateStatus();
      },
    );
  };
  return h(
    'div',
    { class: 'table-wrap' },
    h('h3', {}, t('Most sensitive first')),
    h(
      'table',
      { id: 'sensitivity-ranking' },
      h(
        'thead',
        {},
        h('tr', {}, h('th', {}, '#'), h('th', {}, t('Layer')), h('th', { class: 'num', title: t('mean metric over the levels') }, t('Score')), h('th', {}, t('Exclude')), h('th', {}, t('Sparsity')), h('th', {}, t('Bits'))),
      ),
      h(
        'tbody',
        {},
        ...list.map((l, i) => {
          const c = choices[l.name] ?? {};
          const exclude = h('input', { type: 'checkbox', class: 'choice-exclude', checked: !!c.exclude, disabled: !canChoose, title: t('exclude from compression') });
          exclude.addEventListener('change', () => setChoice(l.name, { ...c, exclude: exclude.checked ? true : undefined }));
          const sparsity = h('input', { type: 'number', class: 'choice-sparsity', min: 0, max: 0.99, step: 0.05, value: c.sparsity ?? '', disabled: !canChoose, placeholder: t('auto') });
          sparsity.addEventListener('change', () => setChoice(l.name, { ...c, sparsity: sparsity.value === '' ? undefined : Number(sparsity.value) }));
          const bits = h('input', { type: 'number', class: 'choice-bits', min: 2, max: 16, step: 1, value: c.bits ?? '', disabled: !canChoose, placeholder: t('auto') });
          bits.addEventListener('change', () => setChoice(l.name, { ...c, bits: bits.value === '' ? undefined : Number(bits.value) }));
          const row = h(
            'tr',
            { class: `ranked${c.exclude ? ' excluded' : ''}${ui.hovered === l.name ? ' hot' : ''}`, 'data-layer': l.name },
            h('td', {}, i + 1),
            h('td', { class: 'mono' }, h('span', { style: `color:${colour.get(l.name)}` }, '■ '), l.name, h('span', { class: 'muted' }, ` ${l.op}`)),
            h('td', { class: 'num' }, formatNumber(l.score)),
            h('td', {}, exclude),
            h('td', {}, sparsity),
            h('td', {}, bits),
          );
          row.addEventListener('mouseenter', () => highlight(l.name));
          row.addEventListener('mouseleave', () => highlight(undefined));
          return row;
        }),
      ),
    ),
  );
}

/** Emphasises one layer's curves and row; the others fade. */
function highlight(name: string | undefined): void {
  save({ hovered: name });
  for (const path of document.querySelectorAll<SVGPathElement>('path.curve')) {
    const me = path.getAttribute('data-layer') === name;
    path.classList.toggle('hot', me);
    path.classList.toggle('dim', name !== undefined && !me);
  }
  for (const tr of document.querySelectorAll('tr.ranked')) tr.classList.toggle('hot', tr.getAttribute('data-layer') === name);
}

function curves(kind: 'prune' | 'quant', list: LayerSensitivity[], colour: Map<string, string>): HTMLElement | null {
  const series = list
    .map((l) => ({ name: l.name, points: kind === 'prune' ? (l.prune ?? []).map((p) => ({ x: p.sparsity, y: p.metric })) : (l.quant ?? []).map((p) => ({ x: p.bits, y: p.metric })) }))
    .filter((s) => s.points.length);
  if (!series.length) return null;
  const width = 300;
  const height = 170;
  const m = { l: 40, r: 8, t: 8, b: 28 };
  const all = series.flatMap((s) => s.points);
  const ymax = Math.max(1e-6, ...all.map((p) => p.y));
  const y = scaleLinear().domain([Math.min(0, ...all.map((p) => p.y)), ymax]).nice().range([height - m.b, m.t]);
  const svg = select(document.createElementNS('http://www.w3.org/2000/svg', 'svg'))
    .attr('class', `curves curves-${kind}`)
    .attr('id', `curves-${kind}`)
    .attr('viewBox', `0 0 ${width} ${height}`)
    .attr('width', width)
    .attr('height', height)
    .style('max-width', '100%')
    .attr('role', 'img')
    .attr('aria-label', kind === 'prune' ? t('metric against sparsity, per layer') : t('metric against bits, per layer'));
  let xOf: (v: number) => number;
  if (kind === 'prune') {
    const x = scaleLinear().domain([0, Math.max(0.95, ...all.map((p) => p.x))]).range([m.l, width - m.r]);
    xOf = x;
    svg.append('g').attr('class', 'axis').attr('transform', `translate(0,${height - m.b})`).call(axisBottom(x).ticks(5, '~%'));
  } else {
    // Bits descend left to right: the further right, the harsher.
    const levels = [...new Set(all.map((p) => p.x))].sort((a, b) => b - a);
    const x = scalePoint<number>().domain(levels).range([m.l, width - m.r]).padding(0.2);
    xOf = (v) => x(v) ?? m.l;
    svg.append('g').attr('class', 'axis').attr('transform', `translate(0,${height - m.b})`).call(axisBottom(x).tickFormat((v) => `${v}b`));
  }
  svg.append('g').attr('class', 'axis').attr('transform', `translate(${m.l},0)`).call(axisLeft(y).ticks(4, '~g'));
  const readout = svg.append('text').attr('class', 'readout').attr('x', width - m.r).attr('y', m.t + 10).attr('text-anchor', 'end');
  const path = line<{ x: number; y: number }>((p) => xOf(p.x), (p) => y(p.y));
  svg
    .append('g')
    .selectAll('path')
    .data(series)
    .join('path')
    .attr('class', (s) => `curve${ui.hovered === undefined ? '' : ui.hovered === s.name ? ' hot' : ' dim'}`)
    .attr('data-layer', (s) => s.name)
    .attr('stroke', (s) => colour.get(s.name) ?? palette[0])
    .attr('d', (s) => path(s.points) ?? '')
    .on('mouseenter', (_e, s) => {
      highlight(s.name);
      readout.text(s.name);
    })
    .on('mouseleave', () => {
      highlight(undefined);
      readout.text('');
    })
    .append('title')
    .text((s) => `${s.name}: ${s.points.map((p) => `${kind === 'prune' ? `${Math.round(p.x * 100)}%` : `${p.x}b`} ${formatNumber(p.y)}`).join(', ')}`);
  return h('section', {}, h('h3', {}, kind === 'prune' ? t('Metric vs sparsity') : t('Metric vs bits')), svg.node()!);
}

function heatTable(list: LayerSensitivity[]): HTMLElement {
  const prune = [...new Set(list.flatMap((l) => (l.prune ?? []).map((p) => p.sparsity)))].sort((a, b) => a - b);
  const bits = [...new Set(list.flatMap((l) => (l.quant ?? []).map((p) => p.bits)))].sort((a, b) => b - a);
  const top = Math.max(1e-9, ...list.flatMap((l) => [...(l.prune ?? []), ...(l.quant ?? [])].map((p) => p.metric)));
  const cell = (v: number | undefined) =>
    v === undefined
      ? h('td', { class: 'cell muted' }, '–')
      : h('td', { class: 'cell', title: String(v), style: `background: color-mix(in srgb, var(--vscode-charts-red) ${Math.round(Math.max(0, Math.min(1, v / top)) * 85)}%, transparent)` }, formatNumber(v));
  return h(
    'section',
    { class: 'table-wrap' },
    h('h3', {}, t('Layers × levels')),
    h(
      'table',
      { class: 'heat', id: 'sensitivity-heat' },
      h('thead', {}, h('tr', {}, h('th', {}, t('Layer')), ...prune.map((s) => h('th', { class: 'num' }, `${Math.round(s * 100)}%`)), ...bits.map((b) => h('th', { class: 'num' }, `${b}b`)))),
      h(
        'tbody',
        {},
        ...list.map((l) =>
          h(
            'tr',
            {},
            h('td', { class: 'mono' }, l.name),
            ...prune.map((s) => cell(l.prune?.find((p) => p.sparsity === s)?.metric)),
            ...bits.map((b) => cell(l.quant?.find((p) => p.bits === b)?.metric)),
          ),
        ),
      ),
    ),
  );
}

render();
