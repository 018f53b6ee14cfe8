import '@vscode-elements/elements/dist/vscode-button/index.js';
import { axisBottom, axisLeft, line, scaleBand, scaleLinear, select } from 'd3';
import type { FromTrainingEvent, RunStartedEvent, ToTrainingEvent, TrainingDiagnostics, TrainingPoint, TrainingReport, TrainingRequests } from '../../src/protocol/training';
import { connect } from '../common/api';
import { formatBytes, formatCount, formatNumber, h } from '../common/dom';
import { fill, t } from '../common/l10n';
import { addPoint, finalPoints, rowShares, seriesOf, topK, type SeriesKey } from './series';
import css from './training.css';

/**
 * The training panel: a live d3 chart of a fine-tune or distillation run (loss and its parts, learning rate,
 * evaluation accuracy, teacher-student agreement, samples/s), Cancel, then the final report in place; for a
 * distillation also the student-vs-teacher confusion, the layer-similarity heatmap and soft-label bars.
 */

document.head.append(h('style', {}, css));
const app = document.getElementById('app')!;

let run: RunStartedEvent | undefined;
let points: TrainingPoint[] = [];
let running = false;
let status = '';
let statusClass = 'muted';
let report: TrainingReport | undefined;
/** When Cancel was clicked (performance.now), to measure how soon the panel is ready again. */
let cancelClickedAt: number | undefined;
let cancelMs: number | undefined;

const colour = (c: string) => `var(--vscode-charts-${c})`;
const seriesStyle: Record<SeriesKey, { label: string; colour: string; dashed?: boolean }> = {
  loss: { label: t('loss'), colour: colour('blue') },
  ce: { label: t('CE (labels)'), colour: colour('orange'), dashed: true },
  kd: { label: t('KD (soft targets)'), colour: colour('purple'), dashed: true },
  feature: { label: t('feature'), colour: colour('green'), dashed: true },
  accuracy: { label: t('eval accuracy'), colour: colour('green') },
  trainAccuracy: { label: t('batch accuracy'), colour: colour('green'), dashed: true },
  agreement: { label: t('teacher agreement'), colour: colour('purple') },
  lr: { label: t('learning rate'), colour: colour('yellow') },
  samplesPerSec: { label: t('samples/s'), colour: colour('red') },
};

const rpc = connect<TrainingRequests, TrainingRequests, FromTrainingEvent, ToTrainingEvent>({}, (event) => {
  switch (event.type) {
    case 'runStarted':
      run = event;
      points = [];
      report = undefined;
      running = true;
      cancelClickedAt = undefined;
      cancelMs = undefined;
      status = t('Starting…');
      statusClass = 'muted';
      render();
      break;
    case 'step':
      // A step that arrives after the end (a cancelled worker draining) changes nothing.
      if (!running) return;
      points = addPoint(points, event.point);
      status = `${t('Step {0} of {1}', event.point.step, event.point.totalSteps)}${event.point.epoch !== undefined ? ` · ${t('epoch {0}', event.point.epoch + 1)}` : ''}`;
      render();
      break;
    case 'runProgress':
      if (!running) return;
      status = `${event.fraction !== undefined ? `${Math.round(event.fraction * 100)}% · ` : ''}${event.message}`;
      updateStatus();
      break;
    case 'runFinished':
      running = false;
      if (event.report) {
        report = event.report;
        points = finalPoints(points, event.report);
        status = t('Done.');
        statusClass = 'muted';
      } else if (event.cancelled) {
        if (cancelClickedAt !== undefined) cancelMs = Math.round(performance.now() - cancelClickedAt);
        status = t('Cancelled: no output was written.');
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

function updateStatus(): void {
  const el = document.getElementById('training-status');
  if (el) {
    el.textContent = status;
    el.className = `progress-line ${statusClass}`;
  }
}

function render(): void {
  app.removeAttribute('aria-busy');
  if (!run) {
    app.replaceChildren(h('p', { class: 'muted' }, t('Run Whittle: Fine-tune… or Whittle: Distill… on a model to watch its training here.')));
    return;
  }
  const distill = run.kind === 'distill';
  app.replaceChildren(
    h('h1', { id: 'training-title' }, run.title),
    h('table', { class: 'facts' }, ...run.facts.map(([k, v]) => h('tr', {}, h('th', {}, k), h('td', { class: 'mono' }, v)))),
    h(
      'div',
      { class: 'toolbar' },
      running
        ? h('vscode-button', {
            id: 'training-cancel',
            onclick: () => {
              cancelClickedAt = performance.now();
              rpc.sendEvent({ type: 'cancel' });
            },
          }, t('Cancel'))
        : null,
      h('div', { id: 'training-status', class: `progress-line ${statusClass}`, 'data-state': running ? 'running' : report ? 'done' : 'stopped', 'data-cancel-ms': cancelMs }, status),
    ),
    liveCards(),
    h(
      'div',
      { class: 'chart-grid' },
      chart('loss', distill ? t('Loss and its parts') : t('Training loss'), ['loss', 'ce', 'kd', 'feature']),
      chart('accuracy', distill ? t('Accuracy and agreement with the teacher') : t('Evaluation accuracy'), ['accuracy', 'trainAccuracy', 'agreement'], [0, 1]),
      chart('lr', t('Learning rate'), ['lr']),
      chart('throughput', t('Samples per second'), ['samplesPerSec']),
    ),
    report ? reportSection(report) : '',
  );
}

/** The latest numbers, as cards. */
function liveCards(): HTMLElement {
  const last = (key: SeriesKey) => seriesOf(points, key).at(-1)?.y;
  const lastPoint = points.at(-1);
  const card = (id: string, label: string, value: string) => h('div', { class: 'card', id }, h('div', { class: 'value' }, value), h('div', { class: 'label' }, label));
  const pct = (v: number | undefined) => (v === undefined ? '–' : `${(v * 100).toFixed(1)}%`);
  return h(
    'div',
    { class: 'cards', id: 'live-cards' },
    card('card-step', t('step'), lastPoint ? `${lastPoint.step} / ${lastPoint.totalSteps}` : '–'),
    card('card-loss', t('loss'), formatNumber(last('loss'))),
    card('card-accuracy', t('eval accuracy'), pct(last('accuracy'))),
    ...(run?.kind === 'distill' ? [card('card-agreement', t('teacher agreement'), pct(last('agreement')))] : []),
    card('card-lr', t('learning rate'), formatNumber(last('lr'))),
    card('card-speed', t('samples/s'), last('samplesPerSec') === undefined ? '–' : String(Math.round(last('samplesPerSec')!))),
  );
}

/** One d3 line chart of some series over steps (series without data are left out of the chart and its legend). */
function chart(name: string, title: string, keys: SeriesKey[], yFixed?: [number, number]): HTMLElement {
  const width = 420;
  const height = 180;
  const m = { l: 48, r: 12, t: 10, b: 26 };
  const drawn = keys.map((k) => ({ key: k, data: seriesOf(points, k) })).filter((s) => s.data.length > 0);
  const all = drawn.flatMap((s) => s.data);
  const total = points.at(-1)?.totalSteps ?? 1;
  const x = scaleLinear().domain([0, Math.max(1, total, ...all.map((p) => p.x))]).range([m.l, width - m.r]);
  const ys = all.map((p) => p.y);
  const y = scaleLinear()
    .domain(yFixed ?? [Math.min(0, ...ys), ys.length ? Math.max(...ys) * 1.05 || 1 : 1])
    .nice()
    .range([height - m.b, m.t]);
  const svg = select(document.createElementNS('http://www.w3.org/2000/svg', 'svg'))
    .attr('class', 'chart')
    .attr('data-chart', name)
    .attr('width', width)
    .attr('height', height)
    .attr('viewBox', `0 0 ${width} ${height}`);
  svg.append('g').attr('class', 'axis').attr('transform', `translate(0,${height - m.b})`).call(axisBottom(x).ticks(5, '~s'));
  svg.append('g').attr('class', 'axis').attr('transform', `translate(${m.l},0)`).call(axisLeft(y).ticks(4, yFixed ? '~%' : '~g'));
  const path = line<{ x: number; y: number }>()
    .x((p) => x(p.x))
    .y((p) => y(p.y));
  for (const s of drawn) {
    const style = seriesStyle[s.key];
    svg
      .append('path')
      .attr('class', `line series-${s.key}`)
      .attr('data-series', s.key)
      .attr('data-points', s.data.length)
      .attr('fill', 'none')
      .attr('stroke', style.colour)
      .attr('stroke-width', 1.6)
      .attr('stroke-dasharray', style.dashed ? '4 3' : null)
      .attr('d', path(s.data));
    // Sparse series (evaluations) also get dots, so one evaluation is visible.
    if (s.data.length < 30) {
      svg
        .append('g')
        .selectAll('circle')
        .data(s.data)
        .join('circle')
        .attr('class', `dot series-${s.key}`)
        .attr('cx', (p) => x(p.x))
        .attr('cy', (p) => y(p.y))
        .attr('r', 2.5)
        .attr('fill', style.colour)
        .append('title')
        .text((p) => t('step {0}: {1}', p.x, formatNumber(p.y)));
    }
  }
  if (!drawn.length) svg.append('text').attr('class', 'readout').attr('x', width / 2).attr('y', height / 2).attr('text-anchor', 'middle').text(running ? t('waiting for the first numbers…') : t('not measured'));
  const legend = h('div', { class: 'legend' }, ...drawn.map((s) => h('span', { class: 'legend-item' }, h('span', { class: 'swatch', style: `background:${seriesStyle[s.key].colour}` }), seriesStyle[s.key].label)));
  return h('section', { class: 'chart-box' }, h('h3', {}, title), svg.node()!, legend);
}

/** The final report: before/after, size, output and its buttons, then the distillation diagnostics. */
function reportSection(r: TrainingReport): HTMLElement {
  const pct = (v: number | undefined) => (v === undefined ? t('n/a') : `${(v * 100).toFixed(2)}%`);
  const distill = r.kind === 'distill';
  const change = (a: number | undefined, b: number | undefined) => (a !== undefined && b !== undefined ? t('{0} pt', `${b >= a ? '+' : ''}${((b - a) * 100).toFixed(2)}`) : '');
  const ratio = (a: number, b: number) => `${(b / Math.max(1, a)).toFixed(2)}x`;
  // Fine-tune: before | after | change. Distill: teacher | student at the start | distilled student | vs the teacher.
  const head = distill ? [t('teacher'), t('student (start)'), t('student (distilled)'), t('vs teacher')] : [t('before'), t('after'), t('change')];
  // The rows' keys stay English (data-row, which the e2e tests select by); their labels are translated.
  const rowLabel: Record<string, string> = {
    accuracy: t('accuracy'),
    size: t('size'),
    parameters: t('parameters'),
    'nonzero parameters': t('nonzero parameters'),
    'latency (ms, median)': t('latency (ms, median)'),
  };
  const rows: Array<[string, ...string[]]> = distill
    ? [
        ['accuracy', pct(r.accuracy.teacher), pct(r.accuracy.before), pct(r.accuracy.after), change(r.accuracy.teacher, r.accuracy.after)],
        ['size', formatBytes(r.sizeBytes.before), '', formatBytes(r.sizeBytes.after), ratio(r.sizeBytes.before, r.sizeBytes.after)],
        ...(r.params ? [['parameters', formatCount(r.params.before), '', formatCount(r.params.after), ratio(r.params.before, r.params.after)] as [string, ...string[]]] : []),
        ...(r.latencyMs ? [['latency (ms, median)', String(r.latencyMs.before), '', String(r.latencyMs.after), ratio(r.latencyMs.before, r.latencyMs.after)] as [string, ...string[]]] : []),
      ]
    : [
        ['accuracy', pct(r.accuracy.before), pct(r.accuracy.after), change(r.accuracy.before, r.accuracy.after)],
        ['size', formatBytes(r.sizeBytes.before), formatBytes(r.sizeBytes.after), ratio(r.sizeBytes.before, r.sizeBytes.after)],
        ...(r.params ? [['nonzero parameters', formatCount(r.params.before), formatCount(r.params.after), ratio(r.params.before, r.params.after)] as [string, ...string[]]] : []),
        ...(r.latencyMs ? [['latency (ms, median)', String(r.latencyMs.before), String(r.latencyMs.after), ''] as [string, ...string[]]] : []),
      ];
  return h(
    'section',
    { id: 'training-report', 'data-kind': r.kind },
    h('h2', {}, t('Report')),
    h(
      'table',
      { class: 'report-table' },
      h('tr', {}, h('th', {}, ''), ...head.map((c) => h('th', { class: 'num' }, c))),
      ...rows.map(([k, ...cells]) => h('tr', { 'data-row': k }, h('th', {}, rowLabel[k] ?? k), ...cells.map((c) => h('td', { class: 'num' }, c)))),
    ),
    h(
      'p',
      { class: 'muted' },
      `${t('{0} steps', r.steps)}${r.samplesPerSec ? t(', {0} samples/s', r.samplesPerSec) : ''}${r.samples ? t('; measured on {0} samples', r.samples) : ''}${r.agreement !== undefined ? (distill ? t('; top-1 agreement with the teacher {0}', pct(r.agreement)) : t('; top-1 agreement with the original {0}', pct(r.agreement))) : ''}${r.best ? t('; kept the weights of step {0} ({1})', r.best.step, pct(r.best.accuracy)) : ''}.`,
    ),
    r.settings ? h('table', { class: 'facts', id: 'distill-settings' }, ...r.settings.map(([k, v]) => h('tr', {}, h('th', {}, settingLabel(k)), h('td', {}, v)))) : '',
    h('p', {}, ...fill(t('Output: {0}'), h('code', { id: 'training-output' }, r.output))),
    h(
      'div',
      { class: 'toolbar' },
      h('vscode-button', { id: 'open-inspector', onclick: () => rpc.sendEvent({ type: 'open', file: r.output, as: 'inspector' }) }, t('Open in Inspector')),
      r.reportFile ? h('vscode-button', { id: 'open-report', secondary: true, onclick: () => rpc.sendEvent({ type: 'open', file: r.reportFile!, as: 'text' }) }, t('Open report.md')) : null,
    ),
    ...r.warnings.map((w) => h('p', { class: 'warning' }, `⚠ ${w}`)),
    r.diagnostics ? diagnosticsSection(r.diagnostics) : '',
  );
}

/** A distillation setting's label (the host sends English keys). */
function settingLabel(key: string): string {
  const labels: Record<string, string> = {
    student: t('student'),
    temperature: t('temperature'),
    'feature pairs': t('feature pairs'),
    training: t('training'),
    'teacher cache': t('teacher cache'),
  };
  return labels[key] ?? key;
}

function diagnosticsSection(d: TrainingDiagnostics): HTMLElement {
  const classes = d.classes ?? d.confusion?.map((_, i) => String(i)) ?? [];
  return h(
    'section',
    { id: 'distill-diagnostics' },
    h('h2', {}, t('Distillation diagnostics')),
    h(
      'div',
      { class: 'heatmap-row' },
      d.confusion
        ? h(
            'section',
            {},
            h('h3', {}, t('Student vs teacher (share of each teacher class)')),
            matrixHeatmap('confusion', rowShares(d.confusion), classes, classes, t('teacher class'), t('student class'), (i, j) => t('teacher {0} → student {1}: {2} samples', classes[i] ?? i, classes[j] ?? j, d.confusion![i][j])),
          )
        : '',
      d.layerSimilarity
        ? h(
            'section',
            {},
            h('h3', {}, t('Layer similarity ({0})', d.layerSimilarity.metric)),
            matrixHeatmap('layer-similarity', d.layerSimilarity.values, d.layerSimilarity.teacher, d.layerSimilarity.student, t('teacher layer'), t('student layer'), (i, j) => `${d.layerSimilarity!.teacher[i]} ~ ${d.layerSimilarity!.student[j]}: ${formatNumber(d.layerSimilarity!.values[i][j])}`),
          )
        : '',
    ),
    d.softLabels?.length ? softLabels(d.softLabels) : '',
  );
}

/** A small matrix as an SVG grid of cells coloured by value in [0, 1], with the value printed when it fits. */
function matrixHeatmap(id: string, values: number[][], rows: string[], cols: string[], rowTitle: string, colTitle: string, tip: (i: number, j: number) => string): HTMLElement {
  const cell = Math.max(16, Math.min(34, Math.floor(320 / Math.max(rows.length, cols.length, 1))));
  const label = (s: string) => (s.length > 14 ? `…${s.slice(-13)}` : s);
  const m = { l: Math.min(100, 12 + 6 * Math.max(...rows.map((r) => label(r).length), 1)), t: 4, b: Math.min(100, 20 + 6 * Math.max(...cols.map((c) => label(c).length), 1)), r: 8 };
  const width = m.l + cols.length * cell + m.r;
  const height = m.t + rows.length * cell + m.b;
  const x = scaleBand<number>().domain(cols.map((_, j) => j)).range([m.l, m.l + cols.length * cell]);
  const y = scaleBand<number>().domain(rows.map((_, i) => i)).range([m.t, m.t + rows.length * cell]);
  const svg = select(document.createElementNS('http://www.w3.org/2000/svg', 'svg')).attr('class', 'matrix-heatmap').attr('id', id).attr('width', width).attr('height', height).attr('data-rows', rows.length).attr('data-cols', cols.length);
  const cells = values.flatMap((row, i) => row.map((v, j) => ({ i, j, v })));
  const g = svg.append('g').selectAll('g').data(cells).join('g');
  g.append('rect')
    .attr('class', 'cell')
    .attr('x', (c) => x(c.j)!)
    .attr('y', (c) => y(c.i)!)
    .attr('width', cell - 1)
    .attr('height', cell - 1)
    .attr('data-value', (c) => c.v)
    .attr('fill', 'var(--vscode-charts-blue, #3794ff)')
    .attr('fill-opacity', (c) => 0.06 + 0.94 * Math.max(0, Math.min(1, c.v)))
    .append('title')
    .text((c) => tip(c.i, c.j));
  if (cell >= 24)
    g.append('text')
      .attr('x', (c) => x(c.j)! + cell / 2)
      .attr('y', (c) => y(c.i)! + cell / 2 + 4)
      .attr('text-anchor', 'middle')
      .attr('class', 'cell-value')
      .text((c) => (c.v >= 0.005 ? (c.v * 100).toFixed(0) : ''));
  svg.append('g').selectAll('text').data(rows).join('text').attr('x', m.l - 4).attr('y', (_, i) => y(i)! + cell / 2 + 4).attr('text-anchor', 'end').text(label);
  svg
    .append('g')
    .selectAll('text')
    .data(cols)
    .join('text')
    .attr('transform', (_, j) => `translate(${x(j)! + cell / 2 + 4},${m.t + rows.length * cell + 4}) rotate(-90)`)
    .attr('text-anchor', 'end')
    .text(label);
  return h('div', {}, h('div', { class: 'muted matrix-note' }, t('rows: {0} · columns: {1}', rowTitle, colTitle)), svg.node()!);
}

/** Teacher vs student probabilities, side by side per class, for a few samples; the top two are spelled out. */
function softLabels(samples: NonNullable<TrainingDiagnostics['softLabels']>): HTMLElement {
  // The two most likely classes, as the article's [0.53, 0.47] example: probability (class).
  const fmt = (p: number[]) => `[${topK(p, 2).map(([c, v]) => `${v.toFixed(2)} (${c})`).join(', ')}]`;
  return h(
    'section',
    { id: 'soft-labels' },
    h('h3', {}, t('Soft labels: teacher vs student probabilities')),
    h(
      'div',
      { class: 'legend' },
      h('span', { class: 'legend-item' }, h('span', { class: 'swatch', style: `background:${colour('blue')}` }), t('teacher')),
      h('span', { class: 'legend-item' }, h('span', { class: 'swatch', style: `background:${colour('orange')}` }), t('student')),
    ),
    h(
      'div',
      { class: 'soft-grid' },
      ...samples.map((s) => {
        const classes = s.teacher.length;
        const width = 240;
        const height = 110;
        const m = { l: 38, r: 4, t: 8, b: 18 };
        const x = scaleBand<number>().domain([...Array(classes).keys()]).range([m.l, width - m.r]).padding(0.15);
        const y = scaleLinear().domain([0, 1]).range([height - m.b, m.t]);
        const svg = select(document.createElementNS('http://www.w3.org/2000/svg', 'svg')).attr('class', 'soft-label').attr('width', width).attr('height', height).attr('data-sample', s.sample);
        svg.append('g').attr('class', 'axis').attr('transform', `translate(0,${height - m.b})`).call(axisBottom(x).tickSizeOuter(0));
        svg.append('g').attr('class', 'axis').attr('transform', `translate(${m.l},0)`).call(axisLeft(y).ticks(2, '~%'));
        const half = x.bandwidth() / 2;
        for (const [who, probs, c, dx] of [['teacher', s.teacher, 'blue', 0], ['student', s.student, 'orange', half]] as const) {
          svg
            .append('g')
            .selectAll('rect')
            .data(probs)
            .join('rect')
            .attr('class', `prob ${who}`)
            .attr('x', (_, k) => x(k)! + dx)
            .attr('y', (p) => y(p))
            .attr('width', half)
            .attr('height', (p) => y(0) - y(p))
            .attr('fill', colour(c))
            .append('title')
            .text((p, k) => t('{0}, class {1}: {2}', who === 'teacher' ? t('teacher') : t('student'), k, p.toFixed(3)));
        }
        return h(
          'figure',
          { class: 'soft-sample' },
          svg.node()!,
          h('figcaption', { class: 'mono' }, s.label !== undefined ? t('sample {0} (label {1}): teacher {2} · student {3}', s.sample, s.label, fmt(s.teacher), fmt(s.student)) : t('sample {0}: teacher {1} · student {2}', s.sample, fmt(s.teacher), fmt(s.student))),
        );
      }),
    ),
  );
}

render();
