import '@vscode-elements/elements/dist/vscode-button/index.js';
import type { CompressHostRequests, CompressRequests, DataPreview, FromCompressEvent, InitEvent, ParamField, PresetPass, RecipeIssue, RunFinishedEvent, ToCompressEvent } from '../../src/protocol/compress';
import { connect, getState, setState } from '../common/api';
import { formatBytes, formatCount, formatNumber, h } from '../common/dom';
import { fill, t } from '../common/l10n';

/**
 * The Compress wizard: 1. the model card (and its cached sensitivity ranking), 2. a goal preset or custom passes
 * (forms generated from the passes' parameter tables), 3. data with a preview, 4. the recipe JSON to review,
 * then Run with progress and Cancel. The host saves the recipe beside the model and opens the report.
 */

const style = document.createElement('style');
style.textContent = `
.steps { display: flex; gap: 6px; margin: 4px 0 14px; flex-wrap: wrap; }
.steps .step { padding: 3px 10px; border-radius: 10px; border: 1px solid var(--vscode-panel-border, rgba(128,128,128,0.4)); color: var(--vscode-descriptionForeground); }
.steps .step.current { background: var(--vscode-button-background); color: var(--vscode-button-foreground); border-color: transparent; }
.choice { display: flex; gap: 8px; align-items: flex-start; padding: 6px 8px; margin: 4px 0; border: 1px solid var(--vscode-panel-border, rgba(128,128,128,0.3)); border-radius: 4px; cursor: pointer; }
.choice:hover { background: var(--vscode-list-hoverBackground); }
.choice.selected { border-color: var(--vscode-focusBorder); }
.choice .detail { color: var(--vscode-descriptionForeground); font-size: 0.92em; }
.pass-form { border-left: 3px solid var(--vscode-charts-blue, #3794ff); padding: 4px 10px; margin: 8px 0; }
.param { display: grid; grid-template-columns: 11em 14em 1fr; gap: 8px; align-items: center; margin: 3px 0; }
.param .help { color: var(--vscode-descriptionForeground); font-size: 0.88em; white-space: normal; }
input[type=text], input[type=number], textarea { background: var(--vscode-input-background); color: var(--vscode-input-foreground); border: 1px solid var(--vscode-input-border, rgba(128,128,128,0.4)); padding: 2px 4px; font: inherit; }
textarea#recipe-json { width: 100%; min-height: 16em; font-family: var(--vscode-editor-font-family); font-size: var(--vscode-editor-font-size, 12px); }
.nav { display: flex; gap: 8px; margin: 16px 0 8px; }
.preview { display: flex; gap: 6px; flex-wrap: wrap; margin: 8px 0; }
.preview figure { margin: 0; text-align: center; font-size: 0.85em; color: var(--vscode-descriptionForeground); }
.preview canvas, .preview img { width: 56px; height: 56px; image-rendering: pixelated; border: 1px solid var(--vscode-panel-border, rgba(128,128,128,0.3)); }
.progress { height: 6px; background: var(--vscode-editorWidget-background); border-radius: 3px; overflow: hidden; margin: 6px 0; }
.progress > div { height: 100%; background: var(--vscode-progressBar-background, #0e70c0); width: 0; transition: width 0.2s; }
`;
document.head.append(style);

const app = document.getElementById('app')!;
app.removeAttribute('aria-busy');

interface UiState {
  step: number;
  preset: string;
  custom: PresetPass[];
  dataMode: 'path' | 'random';
  dataPath: string;
  limit: number;
  seed: number;
  recipeText: string;
}
let ui = getState<UiState>({ step: 1, preset: '', custom: [], dataMode: 'random', dataPath: '', limit: 0, seed: 0, recipeText: '' });
const save = (patch: Partial<UiState>) => {
  ui = { ...ui, ...patch };
  setState(ui);
};

let init: InitEvent | undefined;
let running = false;
let progress: { fraction?: number; message: string } | undefined;
let finished: RunFinishedEvent | undefined;
let issues: RecipeIssue[] = [];
let preview: DataPreview | undefined;
let previewFor = '';

const rpc = connect<CompressHostRequests, CompressRequests, FromCompressEvent, ToCompressEvent>({}, (event) => {
  switch (event.type) {
    case 'init':
      init = event;
      if (!ui.limit) save({ limit: Math.min(event.limit, 256) });
      if (!ui.preset && !ui.custom.length) startFrom(event);
      render();
      break;
    case 'runProgress':
      progress = { fraction: event.fraction, message: event.message };
      updateProgress();
      break;
    case 'runFinished':
      running = false;
      progress = undefined;
      finished = event;
      render();
      break;
    default: {
      const never: never = event;
      void never;
    }
  }
});

/** Opening state: a recipe saved beside the model (custom passes), else the first preset. */
function startFrom(event: InitEvent): void {
  const existing = event.existing as { passes?: PresetPass[]; data?: string; limit?: number; seed?: number } | undefined;
  if (existing && Array.isArray(existing.passes)) {
    save({
      preset: 'custom',
      custom: existing.passes,
      dataMode: existing.data && existing.data !== 'random' ? 'path' : 'random',
      dataPath: existing.data && existing.data !== 'random' ? existing.data : '',
      ...(existing.limit ? { limit: existing.limit } : {}),
      ...(existing.seed !== undefined ? { seed: existing.seed } : {}),
    });
  } else save({ preset: event.presets[0]?.id ?? 'custom' });
}

const stepNames = [t('Model'), t('Goal'), t('Data'), t('Review & run')];

function render(): void {
  if (!init) {
    app.replaceChildren(h('p', { class: finished?.error ? 'error' : 'muted' }, finished?.error ?? t('Reading the model…')));
    return;
  }
  const steps = h('div', { class: 'steps', role: 'tablist' }, ...stepNames.map((n, i) => h('span', { class: `step${ui.step === i + 1 ? ' current' : ''}`, 'data-step': i + 1 }, `${i + 1}. ${n}`)));
  const body = [stepModel, stepGoal, stepData, stepReview][ui.step - 1]();
  const back = h('vscode-button', { id: 'back', secondary: true, disabled: ui.step === 1 || running }, t('Back'));
  back.addEventListener('click', () => go(ui.step - 1));
  const next = h('vscode-button', { id: 'next', disabled: ui.step === 4 || running || (ui.step === 2 && !currentPasses().length) }, t('Next'));
  next.addEventListener('click', () => go(ui.step + 1));
  app.replaceChildren(h('h1', {}, t('Compress {0}', init.model.name)), steps, h('section', { id: `step-${ui.step}`, 'data-step': ui.step }, ...body), h('div', { class: 'nav' }, back, next));
}

function go(step: number): void {
  if (step < 1 || step > 4 || running) return;
  if (step === 4) {
    save({ recipeText: JSON.stringify(buildRecipe(), null, 2) });
    void validate();
  }
  save({ step });
  render();
}

function stepModel(): Node[] {
  const m = init!.model;
  const cards = h(
    'div',
    { class: 'cards', id: 'model-card' },
    card(t('Parameters'), formatCount(m.params), 'card-params'),
    card(t('File size'), formatBytes(m.fileBytes), 'card-size'),
    card(t('Layers with weights'), formatCount(m.layers), 'card-layers'),
    card(t('Format'), m.format, 'card-format'),
  );
  const io = h('p', { class: 'muted' }, t('Inputs: {0}. Ops: {1}.', m.inputs.map((i) => `${i.name} [${(i.shape ?? []).map((d) => d ?? '?').join(', ')}]`).join('; '), m.ops.join(', ')));
  const out: Node[] = [h('p', { class: 'mono', id: 'model-file' }, m.file), cards, io];
  if (m.sensitivity) {
    out.push(
      h('h2', {}, t('Layer sensitivity (cached analysis)')),
      h('p', { class: m.sensitivity.stale ? 'warning' : 'muted' }, `${m.sensitivity.stale ? `${t('The model changed since this analysis ran.')} ` : ''}${t('On {0}, {1}; most sensitive first.', m.sensitivity.data, m.sensitivity.metric)}`),
      h(
        'table',
        { id: 'sensitivity-ranking' },
        h('thead', {}, h('tr', {}, h('th', {}, '#'), h('th', {}, t('Layer')), h('th', { class: 'num' }, t('Score')), h('th', {}, t('Your choice')))),
        h('tbody', {}, ...m.sensitivity.ranking.map((r, i) => h('tr', { 'data-layer': r.layer }, h('td', {}, i + 1), h('td', { class: 'mono' }, r.layer), h('td', { class: 'num' }, formatNumber(r.cost)), h('td', {}, r.choice ?? '')))),
      ),
    );
  } else out.push(h('p', { class: 'muted', id: 'no-sensitivity' }, t('No sensitivity analysis yet: Whittle: Analyze Layer Sensitivity ranks the layers, and its per-layer choices show here.')));
  return out;
}

function card(label: string, value: string, id: string): HTMLElement {
  return h('div', { class: 'card' }, h('div', { class: 'value', id }, value), h('div', { class: 'label' }, label));
}

function stepGoal(): Node[] {
  const choices = init!.presets.map((p) =>
    choiceRow('preset', p.id, ui.preset === p.id, p.label, p.detail, () => {
      save({ preset: p.id });
      render();
    }),
  );
  choices.push(
    choiceRow('preset', 'custom', ui.preset === 'custom', t('Custom passes'), t('build the chain yourself from the passes\' parameters'), () => {
      // Start from the preset that was selected, so a small change is a small edit.
      const from = init!.presets.find((p) => p.id === ui.preset);
      save({ preset: 'custom', custom: ui.custom.length ? ui.custom : (from?.passes ?? []).map((p) => ({ ...p })) });
      render();
    }),
  );
  const out: Node[] = [h('h2', {}, t('What do you want?')), h('div', { id: 'presets' }, ...choices)];
  if (ui.preset === 'custom') out.push(customEditor());
  else {
    const p = init!.presets.find((x) => x.id === ui.preset);
    if (p) out.push(h('p', { class: 'muted', id: 'preset-passes' }, `${t('Passes: {0}', p.passes.map(passText).join(' → '))}${p.maxDrop !== undefined ? t('; chain budget {0} pt', p.maxDrop) : ''}`));
  }
  return out;
}

function passText(p: PresetPass): string {
  const { pass, ...rest } = p;
  return `${pass} ${Object.entries(rest).map(([k, v]) => `${k}=${String(v)}`).join(' ')}`;
}

function choiceRow(name: string, value: string, checked: boolean, label: string, detail: string, onPick: () => void): HTMLElement {
  const input = h('input', { type: 'radio', name, value, id: `${name}-${value}`, checked });
  input.addEventListener('change', onPick);
  const row = h('label', { class: `choice${checked ? ' selected' : ''}`, for: `${name}-${value}` }, input, h('div', {}, h('div', {}, label), h('div', { class: 'detail' }, detail)));
  return row;
}

/** Custom passes: one form per pass, generated from its parameter table. */
function customEditor(): HTMLElement {
  const forms = ui.custom.map((p, i) => passEditor(p, i));
  const add = h('select', { id: 'add-pass' }, h('option', { value: '' }, t('Add a pass…')), ...init!.passes.map((f) => h('option', { value: f.pass }, f.pass)));
  add.addEventListener('change', () => {
    const form = init!.passes.find((f) => f.pass === add.value);
    if (!form) return;
    save({ custom: [...ui.custom, { pass: form.pass }] });
    render();
  });
  return h('div', { id: 'custom-passes' }, ...forms, h('div', { class: 'form-row' }, add));
}

function passEditor(p: PresetPass, index: number): HTMLElement {
  const form = init!.passes.find((f) => f.pass === p.pass);
  const remove = h('vscode-button', { secondary: true, class: 'remove-pass' }, t('Remove'));
  remove.addEventListener('click', () => {
    save({ custom: ui.custom.filter((_, i) => i !== index) });
    render();
  });
  const header = h('div', { class: 'form-row' }, h('strong', {}, `${index + 1}. ${p.pass}`), remove);
  if (!form) return h('div', { class: 'pass-form', 'data-pass': p.pass }, header, h('p', { class: 'warning' }, t('No form for the \'{0}\' pass in this version; edit it in the recipe JSON.', p.pass)));
  return h('div', { class: 'pass-form', 'data-pass': p.pass }, header, h('p', { class: 'muted' }, form.summary), ...form.params.map((f) => paramInput(f, p, index)));
}

/** One parameter row: the input its type calls for, empty meaning the pass's default. */
function paramInput(f: ParamField, p: PresetPass, index: number): HTMLElement {
  const value = p[f.name];
  const set = (v: unknown) => {
    const next = { ...ui.custom[index] };
    if (v === undefined || v === '') delete next[f.name];
    else next[f.name] = v;
    save({ custom: ui.custom.map((x, i) => (i === index ? next : x)) });
  };
  const id = `param-${index}-${f.name}`;
  const dflt = f.default === undefined ? '' : Array.isArray(f.default) ? f.default.join(',') : String(f.default);
  let input: HTMLElement;
  if (f.type === 'enum' || f.type === 'boolean') {
    const options = f.type === 'boolean' ? ['true', 'false'] : (f.choices ?? []);
    const select = h('select', { id, 'data-param': f.name }, h('option', { value: '' }, dflt ? t('default ({0})', dflt) : t('default')), ...options.map((c) => h('option', { value: c, selected: value !== undefined && String(value) === c }, c)));
    select.addEventListener('change', () => set(select.value === '' ? undefined : f.type === 'boolean' ? select.value === 'true' : select.value));
    input = select;
  } else {
    const text = h('input', {
      id,
      'data-param': f.name,
      type: f.type === 'number' ? 'number' : 'text',
      placeholder: dflt ? t('default {0}', dflt) : '',
      value: value === undefined ? '' : Array.isArray(value) ? value.join(',') : String(value),
      ...(f.min !== undefined ? { min: f.min } : {}),
      ...(f.max !== undefined ? { max: f.max } : {}),
      ...(f.type === 'number' ? { step: 'any' } : {}),
    });
    text.addEventListener('change', () => {
      const raw = text.value.trim();
      if (raw === '') set(undefined);
      else if (f.type === 'number') set(Number(raw));
      else if (f.type === 'list') set(raw.split(',').map((s) => s.trim()).filter(Boolean));
      else set(raw);
    });
    input = text;
  }
  return h('div', { class: 'param' }, h('label', { for: id, class: 'mono', title: f.flag }, f.name), input, h('span', { class: 'help' }, f.help));
}

function currentPasses(): PresetPass[] {
  if (ui.preset === 'custom') return ui.custom;
  return init!.presets.find((p) => p.id === ui.preset)?.passes ?? [];
}

function dataSpec(): string {
  return ui.dataMode === 'random' || !ui.dataPath.trim() ? 'random' : ui.dataPath.trim();
}

function stepData(): Node[] {
  const preset = init!.presets.find((p) => p.id === ui.preset);
  const pathInput = h('input', { type: 'text', id: 'data-spec', value: ui.dataPath, placeholder: t('a file, a folder, a *.dataset.json, optionally #A:B'), style: 'width: 60%' });
  pathInput.addEventListener('change', () => {
    save({ dataPath: pathInput.value, dataMode: 'path' });
    render();
  });
  const browse = h('vscode-button', { id: 'data-browse', secondary: true }, t('Browse…'));
  browse.addEventListener('click', async () => {
    const picked = await rpc.request('pickData', {});
    if (picked) {
      save({ dataPath: picked, dataMode: 'path' });
      render();
    }
  });
  const limit = h('input', { type: 'number', id: 'data-limit', min: 1, value: ui.limit, style: 'width: 6em' });
  limit.addEventListener('change', () => save({ limit: Math.max(1, Math.round(Number(limit.value) || 1)) }));
  const seed = h('input', { type: 'number', id: 'data-seed', min: 0, value: ui.seed, style: 'width: 6em' });
  seed.addEventListener('change', () => save({ seed: Math.max(0, Math.round(Number(seed.value) || 0)) }));
  const out: Node[] = [
    h('h2', {}, t('Data to calibrate and evaluate on')),
    choiceRow('data', 'path', ui.dataMode === 'path', t('A file or folder'), t('MNIST idx (.gz), an image folder (class sub-folders are labels), .npy/.npz, input_N.pb, or a *.dataset.json manifest'), () => {
      save({ dataMode: 'path' });
      render();
    }),
    h('div', { class: 'form-row' }, pathInput, browse),
    choiceRow('data', 'random', ui.dataMode === 'random', t('Random inputs'), t('no data needed: measures agreement with the original model, not accuracy'), () => {
      save({ dataMode: 'random' });
      render();
    }),
    h('div', { class: 'form-row' }, h('label', { for: 'data-limit' }, t('Samples')), limit, h('label', { for: 'data-seed' }, t('Seed')), seed),
  ];
  if (dataSpec() === 'random' && preset?.wantsData) out.push(h('p', { class: 'warning', id: 'random-warning' }, t('“{0}” calibrates or budgets on the data: on random inputs the result is not representative of real inputs.', preset.label)));
  const box = h('div', { id: 'data-preview' });
  out.push(box);
  void showPreview(box);
  return out;
}

async function showPreview(box: HTMLElement): Promise<void> {
  const spec = dataSpec();
  if (previewFor !== spec || !preview) {
    box.replaceChildren(h('p', { class: 'muted' }, t('Reading the first samples…')));
    previewFor = spec;
    try {
      preview = await rpc.request('previewData', { data: spec });
    } catch (err) {
      preview = { description: spec, samples: [], warning: err instanceof Error ? err.message : String(err) };
    }
    if (previewFor !== spec) return;
  }
  const p = preview;
  box.replaceChildren(
    h('p', { class: 'muted', id: 'data-description' }, p.description),
    ...(p.warning ? [h('p', { class: 'warning' }, p.warning)] : []),
    h('div', { class: 'preview' }, ...p.samples.map((s, i) => h('figure', { 'data-sample': i }, s.url ? h('img', { src: s.url, alt: s.label ?? t('sample {0}', i) }) : grayCanvas(s), h('figcaption', {}, s.label ?? `#${i}`)))),
  );
}

function grayCanvas(s: DataPreview['samples'][number]): HTMLCanvasElement {
  const c = h('canvas', { width: s.width, height: s.height, class: 'sample' });
  const ctx = c.getContext('2d');
  if (ctx && s.gray) {
    const img = ctx.createImageData(s.width, s.height);
    s.gray.forEach((v, i) => {
      img.data[i * 4] = img.data[i * 4 + 1] = img.data[i * 4 + 2] = v;
      img.data[i * 4 + 3] = 255;
    });
    ctx.putImageData(img, 0, 0);
  }
  return c;
}

function buildRecipe(): Record<string, unknown> {
  const preset = init!.presets.find((p) => p.id === ui.preset);
  return {
    model: init!.modelRef,
    data: dataSpec(),
    seed: ui.seed,
    limit: ui.limit,
    ...(preset?.maxDrop !== undefined ? { maxDrop: preset.maxDrop } : {}),
    passes: currentPasses().map((p) => ({ ...p })),
  };
}

async function validate(): Promise<void> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(ui.recipeText);
  } catch (err) {
    issues = [{ path: '', message: t('not JSON: {0}', err instanceof Error ? err.message : String(err)) }];
    renderIssues();
    return;
  }
  issues = await rpc.request('validate', { recipe: parsed });
  renderIssues();
}

function renderIssues(): void {
  const box = document.getElementById('recipe-issues');
  if (box) box.replaceChildren(...issues.map((i) => h('div', { class: 'error' }, `${i.path || '/'}: ${i.message}`)));
  const run = document.getElementById('run');
  if (run) (run as HTMLElement & { disabled: boolean }).disabled = running || issues.length > 0;
}

function stepReview(): Node[] {
  const text = h('textarea', { id: 'recipe-json', spellcheck: 'false' }) as HTMLTextAreaElement;
  text.value = ui.recipeText;
  let timer: ReturnType<typeof setTimeout> | undefined;
  text.addEventListener('input', () => {
    save({ recipeText: text.value });
    clearTimeout(timer);
    timer = setTimeout(() => void validate(), 300);
  });
  const run = h('vscode-button', { id: 'run', disabled: running || issues.length > 0 }, t('Run'));
  run.addEventListener('click', () => {
    let recipe: unknown;
    try {
      recipe = JSON.parse(ui.recipeText);
    } catch {
      return;
    }
    running = true;
    finished = undefined;
    progress = { message: t('Starting…') };
    rpc.sendEvent({ type: 'run', recipe });
    render();
  });
  const cancel = h('vscode-button', { id: 'cancel', secondary: true, disabled: !running }, t('Cancel'));
  cancel.addEventListener('click', () => rpc.sendEvent({ type: 'cancel' }));
  const out: Node[] = [
    h('h2', {}, t('Review the recipe')),
    h('p', { class: 'muted' }, ...fill(t('Saved as {0} when you press Run; run it again any time from its ▶ Run recipe CodeLens or with {1}.'), h('code', { id: 'recipe-file' }, init!.recipeRelative), h('code', {}, `whittle run ${init!.recipeRelative}`))),
    text,
    h('div', { id: 'recipe-issues' }),
    h('div', { class: 'nav' }, run, cancel),
    h('div', { class: 'progress', id: 'run-progress', hidden: !running }, h('div', {})),
    h('p', { id: 'run-status', class: finished?.error ? 'error' : 'muted', 'data-state': running ? 'running' : finished?.result ? 'done' : finished?.cancelled ? 'cancelled' : finished?.error ? 'error' : 'idle' }, statusText()),
  ];
  if (finished?.result) {
    const r = finished.result;
    const open = h('vscode-button', { id: 'open-report', secondary: true }, t('Open report'));
    open.addEventListener('click', () => rpc.sendEvent({ type: 'openReport' }));
    out.push(
      h(
        'div',
        { id: 'run-result' },
        h('p', {}, ...fill(t('Wrote {0}'), h('code', { id: 'result-output' }, r.output))),
        h('p', { class: 'muted' }, 'SHA-256 ', h('code', { id: 'result-sha256' }, r.sha256)),
        ...r.warnings.map((w) => h('p', { class: 'warning' }, w)),
        open,
      ),
    );
  }
  renderIssuesSoon();
  return out;
}

function renderIssuesSoon(): void {
  setTimeout(renderIssues, 0);
}

function statusText(): string {
  if (running) return progress ? `${progress.fraction !== undefined ? `${Math.round(progress.fraction * 100)}% · ` : ''}${progress.message}` : t('Running…');
  if (finished?.result) return t('Done: {0}. The report is open.', finished.result.summary);
  if (finished?.cancelled) return t('Cancelled: nothing was written. Ready.');
  if (finished?.error) return finished.error;
  return t('Ready.');
}

function updateProgress(): void {
  const status = document.getElementById('run-status');
  if (status) status.textContent = statusText();
  const bar = document.querySelector<HTMLElement>('#run-progress > div');
  if (bar && progress?.fraction !== undefined) bar.style.width = `${Math.round(progress.fraction * 100)}%`;
}

render();
