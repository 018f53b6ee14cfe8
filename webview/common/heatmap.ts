import { formatNumber, h } from './dom';

/**
 * A canvas heatmap of a 2-D matrix too big to send whole (a weight as out-channels x the rest; later a prune
 * mask or a quantization error). It never holds the matrix: it asks `tile` for the visible region at a stride
 * that keeps the tile near `maxTileCells`, draws the coarse overview at once, and refines after zoom (wheel) and
 * pan (drag). Colours come from the theme.
 */

/** A tile as the provider returns it: `values` are float32, row-major, `rows` x `cols` cells of `stride` x `stride` elements. */
export interface HeatmapTile {
  row: number;
  col: number;
  rows: number;
  cols: number;
  stride: number;
  values: ArrayBuffer | Float32Array;
  /** Range over the whole matrix, so that every tile shares one colour scale. */
  min: number;
  max: number;
  /** The whole matrix's size, when the provider knows it better than the caller did. */
  matrixRows?: number;
  matrixCols?: number;
}

/** The tile to fetch: it starts at matrix (row, col) and has rows x cols cells, each the mean of a stride x stride block. */
export interface HeatmapTileRequest {
  row: number;
  col: number;
  rows: number;
  cols: number;
  stride: number;
}

/** Maps a value to RGB (0..255) given the matrix's range. */
export type ColourScale = (value: number, min: number, max: number) => [number, number, number];

/** The visible region: top-left corner and size, in matrix rows and columns. */
export interface HeatmapView {
  row: number;
  col: number;
  rows: number;
  cols: number;
}

/** Options of a heatmap. */
export interface HeatmapOptions {
  /** The whole matrix's size. */
  rows: number;
  cols: number;
  /** Fetches a tile (from the host, which asks the worker). */
  tile: (req: HeatmapTileRequest) => Promise<HeatmapTile>;
  /**
   * 'diverging' (around 0: weights), 'sequential' (errors), 'mask' (cells are the fraction of nonzero weights:
   * 0 all pruned, 1 all kept; tiles come from a provider in mask mode) or a function.
   */
  scale?: 'diverging' | 'sequential' | 'mask' | ColourScale;
  /** Initial view (restored from getState); the whole matrix when absent. */
  view?: HeatmapView;
  onViewChange?: (view: HeatmapView) => void;
  /** Canvas size in CSS pixels. */
  width?: number;
  height?: number;
  /** Cells per tile the heatmap aims at (about 256 x 256). */
  maxTileCells?: number;
  /** Axis names for the readout. */
  rowLabel?: string;
  colLabel?: string;
}

type Rgb = [number, number, number];

/** Resolves a CSS colour (a theme variable) to RGB through a 1x1 canvas. */
function cssColour(expr: string, fallback: string): Rgb {
  const probe = document.createElement('canvas').getContext('2d')!;
  probe.fillStyle = fallback;
  const value = getComputedStyle(document.body).getPropertyValue(expr).trim();
  if (value) probe.fillStyle = value;
  probe.fillRect(0, 0, 1, 1);
  const d = probe.getImageData(0, 0, 1, 1).data;
  return [d[0], d[1], d[2]];
}

const mix = (a: Rgb, b: Rgb, t: number): Rgb => [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t];

/** Blue below zero, red above, the editor background at zero; symmetric so that 0 is always neutral. */
export function divergingScale(): ColourScale {
  const bg = cssColour('--vscode-editor-background', '#1e1e1e');
  const neg = cssColour('--vscode-charts-blue', '#3794ff');
  const pos = cssColour('--vscode-charts-red', '#f14c4c');
  return (v, min, max) => {
    const m = Math.max(Math.abs(min), Math.abs(max)) || 1;
    const t = Math.max(-1, Math.min(1, v / m));
    return mix(bg, t < 0 ? neg : pos, Math.abs(t));
  };
}

/** From the background (min) to the theme's foreground chart colour (max). */
export function sequentialScale(): ColourScale {
  const bg = cssColour('--vscode-editor-background', '#1e1e1e');
  const fg = cssColour('--vscode-charts-orange', '#d18616');
  return (v, min, max) => mix(bg, fg, max > min ? Math.max(0, Math.min(1, (v - min) / (max - min))) : 0);
}

/** A prune mask: pruned (zero) weights in one theme colour, kept ones in another; a block's colour mixes by its kept fraction. */
export function maskScale(): ColourScale {
  const pruned = cssColour('--vscode-charts-red', '#f14c4c');
  const kept = cssColour('--vscode-charts-green', '#89d185');
  return (v) => mix(pruned, kept, Math.max(0, Math.min(1, v)));
}

interface Drawn {
  tile: HeatmapTile;
  values: Float32Array;
  /** Output cells (the provider may echo the region size in matrix units). */
  outRows: number;
  outCols: number;
  image: HTMLCanvasElement;
}

/** The heatmap component: `element` goes into the page; `dispose()` stops it. */
export class Heatmap {
  readonly element: HTMLElement;
  private readonly canvas: HTMLCanvasElement;
  private readonly readout: HTMLElement;
  private readonly legend: HTMLElement;
  private readonly scale: ColourScale;
  private readonly width: number;
  private readonly height: number;
  private readonly maxCells: number;
  private view: HeatmapView;
  private overview: Drawn | undefined;
  private detail: Drawn | undefined;
  private generation = 0;
  private refineTimer: number | undefined;
  private disposed = false;
  /** Removes the window listeners on dispose. */
  private readonly listeners = new AbortController();

  constructor(private readonly opts: HeatmapOptions) {
    this.width = opts.width ?? 512;
    this.height = opts.height ?? 256;
    this.maxCells = opts.maxTileCells ?? 256 * 256;
    this.scale =
      typeof opts.scale === 'function' ? opts.scale : opts.scale === 'sequential' ? sequentialScale() : opts.scale === 'mask' ? maskScale() : divergingScale();
    this.view = opts.view ? this.clamp(opts.view) : { row: 0, col: 0, rows: opts.rows, cols: opts.cols };
    const dpr = window.devicePixelRatio || 1;
    this.canvas = h('canvas', { class: 'heatmap-canvas', width: Math.round(this.width * dpr), height: Math.round(this.height * dpr), tabindex: 0 });
    this.canvas.style.width = `${this.width}px`;
    this.canvas.style.height = `${this.height}px`;
    this.canvas.dataset.scale = typeof opts.scale === 'string' ? opts.scale : opts.scale ? 'custom' : 'diverging';
    this.readout = h('div', { class: 'heatmap-readout mono muted' }, ' ');
    this.legend = h('div', { class: 'heatmap-legend' });
    this.element = h(
      'div',
      { class: 'heatmap' },
      this.canvas,
      h('div', { class: 'heatmap-side' }, this.legend, h('div', { class: 'muted' }, 'wheel: zoom · drag: pan · double-click: reset')),
      this.readout,
    );
    this.attachInput();
    void this.load(true);
  }

  /** The current view. */
  getView(): HeatmapView {
    return { ...this.view };
  }

  /** Stops fetching; pending tiles are dropped. */
  dispose(): void {
    this.disposed = true;
    this.listeners.abort();
    this.generation++;
    if (this.refineTimer !== undefined) clearTimeout(this.refineTimer);
  }

  /** The stride that keeps a region's tile within the cell budget. */
  private strideFor(rows: number, cols: number): number {
    let s = 1;
    while (Math.ceil(rows / s) * Math.ceil(cols / s) > this.maxCells) s *= 2;
    return s;
  }

  private async load(first: boolean): Promise<void> {
    const gen = ++this.generation;
    let { rows, cols } = this.opts;
    if (first || !this.overview) {
      // The whole matrix, coarse: drawn as soon as it arrives, and kept under every finer tile.
      let stride = this.strideFor(rows, cols);
      let tile = await this.fetch({ row: 0, col: 0, rows: Math.ceil(rows / stride), cols: Math.ceil(cols / stride), stride });
      if (!tile || this.disposed) return;
      if (tile.tile.matrixRows && tile.tile.matrixCols && (tile.tile.matrixRows !== rows || tile.tile.matrixCols !== cols)) {
        // The caller guessed the output axis wrong; the provider knows: start again with its shape.
        this.opts.rows = rows = tile.tile.matrixRows;
        this.opts.cols = cols = tile.tile.matrixCols;
        this.view = { row: 0, col: 0, rows, cols };
        stride = this.strideFor(rows, cols);
        tile = await this.fetch({ row: 0, col: 0, rows: Math.ceil(rows / stride), cols: Math.ceil(cols / stride), stride });
        if (!tile || this.disposed) return;
      }
      this.overview = tile;
      this.drawLegend(tile.tile.min, tile.tile.max);
      this.draw();
      this.canvas.dataset.overviewStride = String(stride);
      if (gen !== this.generation) return;
    }
    const v = this.view;
    const r0 = Math.max(0, Math.floor(v.row));
    const c0 = Math.max(0, Math.floor(v.col));
    const r1 = Math.min(rows, Math.ceil(v.row + v.rows));
    const c1 = Math.min(cols, Math.ceil(v.col + v.cols));
    const stride = this.strideFor(r1 - r0, c1 - c0);
    if (stride >= (this.overview?.tile.stride ?? Infinity)) {
      this.detail = undefined;
      this.draw();
      return;
    }
    const tile = await this.fetch({ row: r0, col: c0, rows: Math.ceil((r1 - r0) / stride), cols: Math.ceil((c1 - c0) / stride), stride });
    if (!tile || gen !== this.generation || this.disposed) return;
    this.detail = tile;
    this.draw();
  }

  private async fetch(req: HeatmapTileRequest): Promise<Drawn | undefined> {
    let tile: HeatmapTile;
    try {
      tile = await this.opts.tile(req);
    } catch (err) {
      this.readout.textContent = `Cannot read the tile: ${(err as Error).message}`;
      this.readout.classList.add('error');
      return undefined;
    }
    const values = tile.values instanceof Float32Array ? tile.values : new Float32Array(tile.values);
    // Tolerate either reading of rows/cols in the reply: output cells, or the region in matrix units.
    let outRows = tile.rows;
    let outCols = tile.cols;
    if (values.length !== outRows * outCols) {
      outRows = Math.ceil(tile.rows / tile.stride);
      outCols = Math.ceil(tile.cols / tile.stride);
    }
    const image = document.createElement('canvas');
    image.width = Math.max(1, outCols);
    image.height = Math.max(1, outRows);
    const ctx = image.getContext('2d')!;
    const data = ctx.createImageData(image.width, image.height);
    for (let i = 0; i < outRows * outCols; i++) {
      const v = values[i];
      const [r, g, b] = Number.isFinite(v) ? this.scale(v, tile.min, tile.max) : [255, 0, 255];
      data.data[i * 4] = r;
      data.data[i * 4 + 1] = g;
      data.data[i * 4 + 2] = b;
      data.data[i * 4 + 3] = 255;
    }
    ctx.putImageData(data, 0, 0);
    return { tile, values, outRows, outCols, image };
  }

  private draw(): void {
    const ctx = this.canvas.getContext('2d')!;
    const sx = this.canvas.width / this.view.cols;
    const sy = this.canvas.height / this.view.rows;
    ctx.imageSmoothingEnabled = false;
    ctx.clearRect(0, 0, this.canvas.width, this.canvas.height);
    for (const d of [this.overview, this.detail]) {
      if (!d) continue;
      const t = d.tile;
      // Each cell covers stride x stride elements; the last cells may be cut by the matrix's edge.
      const w = Math.min(d.outCols * t.stride, this.opts.cols - t.col);
      const hgt = Math.min(d.outRows * t.stride, this.opts.rows - t.row);
      const srcW = w / t.stride;
      const srcH = hgt / t.stride;
      ctx.drawImage(d.image, 0, 0, srcW, srcH, (t.col - this.view.col) * sx, (t.row - this.view.row) * sy, w * sx, hgt * sy);
    }
    this.canvas.dataset.drawn = this.detail ? 'detail' : 'overview';
    this.canvas.dataset.stride = String((this.detail ?? this.overview)?.tile.stride ?? '');
    this.canvas.dataset.view = `${Math.round(this.view.row)},${Math.round(this.view.col)},${Math.round(this.view.rows)}x${Math.round(this.view.cols)}`;
  }

  private drawLegend(min: number, max: number): void {
    const bar = h('canvas', { class: 'heatmap-legend-bar', width: 160, height: 10 });
    const ctx = bar.getContext('2d')!;
    if (this.opts.scale === 'mask') {
      // Two colours and the blends between them: a block's colour is its kept fraction.
      for (let x = 0; x < 160; x++) {
        const [r, g, b] = this.scale(x < 20 ? 0 : x >= 140 ? 1 : (x - 20) / 120, 0, 1);
        ctx.fillStyle = `rgb(${r | 0},${g | 0},${b | 0})`;
        ctx.fillRect(x, 0, 1, 10);
      }
      this.legend.replaceChildren(bar, h('div', { class: 'heatmap-legend-labels mono' }, h('span', {}, 'pruned (0)'), h('span', {}, 'kept')));
      return;
    }
    const diverging = this.opts.scale === undefined || this.opts.scale === 'diverging';
    const lo = diverging ? -Math.max(Math.abs(min), Math.abs(max)) : min;
    const hi = diverging ? -lo : max;
    for (let x = 0; x < 160; x++) {
      const [r, g, b] = this.scale(lo + ((hi - lo) * x) / 159, min, max);
      ctx.fillStyle = `rgb(${r | 0},${g | 0},${b | 0})`;
      ctx.fillRect(x, 0, 1, 10);
    }
    this.legend.replaceChildren(
      bar,
      h('div', { class: 'heatmap-legend-labels mono' }, h('span', {}, formatNumber(lo)), h('span', {}, diverging ? '0' : ''), h('span', {}, formatNumber(hi))),
    );
  }

  private clamp(v: HeatmapView): HeatmapView {
    const { rows, cols } = this.opts;
    // Never zoom in past a few cells, never out past the whole matrix.
    const vr = Math.max(Math.min(rows, 4), Math.min(rows, v.rows));
    const vc = Math.max(Math.min(cols, 4), Math.min(cols, v.cols));
    return { rows: vr, cols: vc, row: Math.max(0, Math.min(rows - vr, v.row)), col: Math.max(0, Math.min(cols - vc, v.col)) };
  }

  private setView(v: HeatmapView): void {
    this.view = this.clamp(v);
    this.draw();
    this.opts.onViewChange?.(this.getView());
    // Refine once the user pauses, so a wheel burst asks for one tile, not twenty.
    if (this.refineTimer !== undefined) clearTimeout(this.refineTimer);
    this.refineTimer = window.setTimeout(() => void this.load(false), 120);
  }

  private cellAt(e: MouseEvent): { row: number; col: number; fx: number; fy: number } {
    const rect = this.canvas.getBoundingClientRect();
    const fx = (e.clientX - rect.left) / rect.width;
    const fy = (e.clientY - rect.top) / rect.height;
    return { row: Math.floor(this.view.row + fy * this.view.rows), col: Math.floor(this.view.col + fx * this.view.cols), fx, fy };
  }

  private valueAt(row: number, col: number): { value: number; stride: number } | undefined {
    for (const d of [this.detail, this.overview]) {
      if (!d) continue;
      const t = d.tile;
      const i = Math.floor((row - t.row) / t.stride);
      const j = Math.floor((col - t.col) / t.stride);
      if (i >= 0 && j >= 0 && i < d.outRows && j < d.outCols) return { value: d.values[i * d.outCols + j], stride: t.stride };
    }
    return undefined;
  }

  private attachInput(): void {
    const c = this.canvas;
    c.addEventListener(
      'wheel',
      (e) => {
        e.preventDefault();
        const { fx, fy } = this.cellAt(e);
        const k = Math.exp(e.deltaY * 0.002);
        const rows = this.view.rows * k;
        const cols = this.view.cols * k;
        // Zoom about the pointer: the cell under it stays under it.
        this.setView({ rows, cols, row: this.view.row + fy * (this.view.rows - rows), col: this.view.col + fx * (this.view.cols - cols) });
      },
      { passive: false },
    );
    let drag: { x: number; y: number; view: HeatmapView } | undefined;
    c.addEventListener('mousedown', (e) => {
      e.preventDefault();
      drag = { x: e.clientX, y: e.clientY, view: this.getView() };
    });
    // On the window, so a drag that leaves the canvas still pans and still ends.
    window.addEventListener('mouseup', () => (drag = undefined), { signal: this.listeners.signal });
    window.addEventListener('mousemove', (e) => {
      if (!drag || this.disposed) return;
      const rect = c.getBoundingClientRect();
      const dr = ((e.clientY - drag.y) / rect.height) * drag.view.rows;
      const dc = ((e.clientX - drag.x) / rect.width) * drag.view.cols;
      this.setView({ ...drag.view, row: drag.view.row - dr, col: drag.view.col - dc });
    }, { signal: this.listeners.signal });
    c.addEventListener('mousemove', (e) => {
      const { row, col } = this.cellAt(e);
      const hit = this.valueAt(row, col);
      this.readout.classList.remove('error');
      const at = `${this.opts.rowLabel ?? 'row'} ${row}, ${this.opts.colLabel ?? 'col'} ${col}`;
      const mask = this.opts.scale === 'mask';
      this.readout.textContent = !hit
        ? ' '
        : mask
          ? `${at}: ${hit.stride > 1 ? `${(hit.value * 100).toFixed(1)}% kept of ${hit.stride}×${hit.stride}` : hit.value ? 'kept' : 'pruned (0)'}`
          : `${at}: ${formatNumber(hit.value)}${hit.stride > 1 ? ` (mean of ${hit.stride}×${hit.stride})` : ''}`;
    });
    c.addEventListener('dblclick', () => this.setView({ row: 0, col: 0, rows: this.opts.rows, cols: this.opts.cols }));
  }
}
