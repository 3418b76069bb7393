/**
 * Read-only views in JupyterLab's main area: a volume file (text, image, notebook) and
 * a diff of a file between two commits: nbdime's rendered notebook diff for a notebook
 * when the server has nbdime, else a line diff (of a notebook, its cells' sources).
 *
 * The bytes come through the REST API (`VolumeModel.readBlob`, `/nbdiff`); nothing is
 * written to the Jupyter server's own files.
 */
import { MainAreaWidget } from '@jupyterlab/apputils';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import { Panel, Widget } from '@lumino/widgets';
import { IDiffEntry as INbdimeDiffEntry } from 'nbdime/lib/diff/diffentries';
import { NotebookDiffModel } from 'nbdime/lib/diff/model';
import { CELLDIFF_CLASS, NotebookDiffWidget } from 'nbdime/lib/diff/widget';
import { UNCHANGED_DIFF_CLASS } from 'nbdime/lib/diff/widget/common';

import { el } from './dom';
import { requestAPI } from './handler';
import { IEntry, VolumeModel, kindRoute } from './model';

/** Files larger than this are not shown, only offered for download. */
const MAX_VIEW_BYTES = 10 * 1024 * 1024;
/** Line pairs compared at most by the diff (its table is lines(a) x lines(b)). */
const MAX_DIFF_CELLS = 4_000_000;

const IMAGE_TYPES: Record<string, string> = {
  png: 'image/png',
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
  gif: 'image/gif',
  webp: 'image/webp',
  bmp: 'image/bmp'
};


function extension(name: string): string {
  const i = name.lastIndexOf('.');
  return i < 0 ? '' : name.slice(i + 1).toLowerCase();
}

/** The text of a blob, or null when it looks binary (a NUL byte in its first 8 KiB). */
async function textOf(blob: Blob): Promise<string | null> {
  const head = new Uint8Array(await blob.slice(0, 8192).arrayBuffer());
  if (head.includes(0)) {
    return null;
  }
  return blob.text();
}

/** A main-area widget (closable, read-only) with `body` as its content. */
function mainWidget(id: string, label: string, caption: string, body: HTMLElement): MainAreaWidget {
  const content = new Widget({ node: body });
  content.addClass('jp-VolumeViewer');
  const widget = new MainAreaWidget({ content });
  widget.id = id;
  widget.title.label = label;
  widget.title.caption = caption;
  widget.title.closable = true;
  return widget;
}

function widgetId(prefix: string, ...parts: (string | number | null)[]): string {
  return `jupyter-volume-${prefix}-` + parts.map(p => encodeURIComponent(String(p))).join('-');
}

/** A notebook as its cells, read-only (markdown as its source, outputs as text). */
function notebookView(text: string): HTMLElement {
  const box = el('div', 'jp-VolumeViewer-notebook');
  let nb: any;
  try {
    nb = JSON.parse(text);
  } catch {
    box.appendChild(el('pre', 'jp-VolumeViewer-text', text));
    return box;
  }
  for (const cell of nb.cells ?? []) {
    const src = Array.isArray(cell.source) ? cell.source.join('') : String(cell.source ?? '');
    const c = box.appendChild(el('div', `jp-VolumeViewer-cell jp-mod-${cell.cell_type}`));
    c.appendChild(el('div', 'jp-VolumeViewer-cellType', cell.cell_type === 'code' ? 'In' : 'Md'));
    c.appendChild(el('pre', 'jp-VolumeViewer-text', src));
    for (const out of cell.outputs ?? []) {
      const data = out.text ?? out.data?.['text/plain'] ?? out.evalue ?? '';
      const t = Array.isArray(data) ? data.join('') : String(data);
      if (t) {
        c.appendChild(el('pre', 'jp-VolumeViewer-output', t));
      }
    }
  }
  return box;
}

/**
 * Open `entry` of the model's volume (at the browsed commit) read-only in the main
 * area: text, images and notebooks are shown, anything else offered for download.
 */
export async function openFile(
  model: VolumeModel,
  entry: IEntry,
  add: (w: Widget, replaces?: string) => void
): Promise<MainAreaWidget> {
  const at = model.at;
  const where = `${model.volume}:${entry.path}` + (at === null ? '' : ` @ #${at}`);
  const body = el('div', 'jp-VolumeViewer-body');
  body.dataset.path = entry.path;
  // The newest version says which one it is: the file may change after it was opened.
  const version =
    at === null && entry.mtime > 0 ? `, modified ${new Date(entry.mtime * 1000).toLocaleString()}` : '';
  const banner = el(
    'div',
    'jp-VolumeViewer-banner',
    `Read-only view of ${where}${version}. Download the file to change it, or mount the volume.`
  );
  body.appendChild(banner);
  // A file at a commit never changes; the newest one is named by its size and time too,
  // so opening it again once the listing shows a change reads it anew (and replaces the
  // tab of the old version) instead of showing that old tab.
  const file = widgetId('view', model.volume, entry.path, at);
  const id = at === null ? `${file}-${entry.size}-${entry.mtime}` : file;
  const widget = mainWidget(id, entry.name, where, body);
  add(widget, file);
  if (entry.size > MAX_VIEW_BYTES) {
    body.appendChild(
      el('p', 'jp-VolumeViewer-note', 'This file is too large to show here: download it instead.')
    );
    return widget;
  }
  const blob = await model.readBlob(entry.path, at);
  const ext = extension(entry.name);
  if (IMAGE_TYPES[ext]) {
    const img = body.appendChild(el('img', 'jp-VolumeViewer-image'));
    img.alt = entry.name;
    img.src = URL.createObjectURL(new Blob([blob], { type: IMAGE_TYPES[ext] }));
    widget.disposed.connect(() => URL.revokeObjectURL(img.src));
    return widget;
  }
  const text = await textOf(blob);
  if (text === null) {
    body.appendChild(
      el('p', 'jp-VolumeViewer-note', 'This is a binary file: download it to open it.')
    );
  } else if (ext === 'ipynb') {
    body.appendChild(notebookView(text));
  } else {
    body.appendChild(el('pre', 'jp-VolumeViewer-text', text));
  }
  return widget;
}

export type DiffLine = { op: ' ' | '-' | '+'; text: string };

/** The lines of `a` and `b` as kept / removed / added (longest common subsequence). */
export function lineDiff(a: string[], b: string[]): DiffLine[] | null {
  // common head and tail first: most edits are small, so the table stays small
  let start = 0;
  while (start < a.length && start < b.length && a[start] === b[start]) {
    start++;
  }
  let endA = a.length;
  let endB = b.length;
  while (endA > start && endB > start && a[endA - 1] === b[endB - 1]) {
    endA--;
    endB--;
  }
  const x = a.slice(start, endA);
  const y = b.slice(start, endB);
  if ((x.length + 1) * (y.length + 1) > MAX_DIFF_CELLS) {
    return null;
  }
  const w = y.length + 1;
  const lcs = new Uint32Array((x.length + 1) * w);
  for (let i = x.length - 1; i >= 0; i--) {
    for (let j = y.length - 1; j >= 0; j--) {
      lcs[i * w + j] =
        x[i] === y[j] ? lcs[(i + 1) * w + j + 1] + 1 : Math.max(lcs[(i + 1) * w + j], lcs[i * w + j + 1]);
    }
  }
  const out: DiffLine[] = a.slice(0, start).map(text => ({ op: ' ' as const, text }));
  let i = 0;
  let j = 0;
  while (i < x.length || j < y.length) {
    if (i < x.length && j < y.length && x[i] === y[j]) {
      out.push({ op: ' ', text: x[i] });
      i++;
      j++;
    } else if (i < x.length && (j >= y.length || lcs[(i + 1) * w + j] >= lcs[i * w + j + 1])) {
      out.push({ op: '-', text: x[i++] }); // removals first, as `diff -u` shows them
    } else {
      out.push({ op: '+', text: y[j++] });
    }
  }
  return out.concat(a.slice(endA).map(text => ({ op: ' ' as const, text })));
}

/** A notebook as one text: each cell's source under a "# %% [type]" line. */
export function notebookSource(text: string): string {
  if (!text) {
    return text;
  }
  let nb: any;
  try {
    nb = JSON.parse(text);
  } catch {
    return text; // not JSON after all: compare the text
  }
  return (nb.cells ?? [])
    .map((cell: any) => {
      const src = Array.isArray(cell.source) ? cell.source.join('') : String(cell.source ?? '');
      return `# %% [${cell.cell_type}]\n${src}`;
    })
    .join('\n');
}

/** What `/nbdiff` answers: the notebook at `a` and nbdime's diff from it to `b`. */
interface INbdimeReply {
  base: any;
  diff: INbdimeDiffEntry[];
}

/**
 * nbdime's rendered diff of notebook `path` from commit `a` to `b` (cells side by side,
 * outputs, metadata), added to `content` below the banner; the server computes the
 * diff with nbdime (an ApiError when it has no nbdime or nbdime failed).
 */
async function nbdimeDiff(
  model: VolumeModel,
  path: string,
  a: number,
  b: number,
  rendermime: IRenderMimeRegistry,
  content: Panel,
  banner: HTMLElement
): Promise<void> {
  const volume = encodeURIComponent(model.volume ?? '');
  const data = await requestAPI<INbdimeReply>(
    `${kindRoute(model.kind)}/${volume}/nbdiff?path=${encodeURIComponent(path)}&a=${a}&b=${b}`
  );
  const diffWidget = new NotebookDiffWidget({
    model: new NotebookDiffModel(data.base, data.diff),
    rendermime
  });
  // nbdime's stylesheet lays a diff out inside an `nbdime-root` scroller, as its own
  // JupyterLab extension does
  const scroller = new Panel();
  scroller.addClass('nbdime-root');
  scroller.addClass('jp-VolumeViewer-nbdime');
  scroller.addWidget(diffWidget);
  content.addWidget(scroller);
  await diffWidget.init();
  // Unchanged cells can be hidden, as in nbdime's and jupyterlab-git's views.
  const cells = Array.from(scroller.node.querySelectorAll(`.${CELLDIFF_CLASS}`));
  const unchanged = cells.filter(c => c.classList.contains(UNCHANGED_DIFF_CLASS)).length;
  const label = banner.appendChild(el('label', 'jp-VolumeViewer-hideUnchanged'));
  const box = label.appendChild(el('input'));
  box.type = 'checkbox';
  label.appendChild(document.createTextNode(` Hide unchanged cells (${unchanged} of ${cells.length})`));
  box.onchange = () => scroller.toggleClass('jp-mod-hideUnchanged', box.checked);
  if (cells.length > 0 && unchanged === cells.length) {
    banner.appendChild(el('p', 'jp-VolumeViewer-note', 'No differences in the cells.'));
  }
}

/**
 * Open a diff of `path` from commit `a` to commit `b` in the main area: nbdime's
 * notebook diff for a notebook when the server has nbdime (and `rendermime` is given),
 * else a line diff (a notebook's cells' sources, saying why nbdime was not used).
 */
export async function openDiff(
  model: VolumeModel,
  path: string,
  a: number,
  b: number,
  add: (w: Widget) => void,
  rendermime: IRenderMimeRegistry | null = null
): Promise<MainAreaWidget> {
  const name = path.split('/').pop() ?? path;
  const body = el('div', 'jp-VolumeViewer-body jp-VolumeViewer-diffBody');
  body.dataset.path = path;
  body.dataset.volume = model.volume ?? '';
  const banner = body.appendChild(
    el('div', 'jp-VolumeViewer-banner', `${model.volume}:${path}, commit #${a} → commit #${b}`)
  );
  const content = new Panel();
  content.addClass('jp-VolumeViewer');
  content.addWidget(new Widget({ node: body }));
  const widget = new MainAreaWidget({ content });
  widget.id = widgetId('diff', model.volume, path, a, b);
  widget.title.label = `${name} (#${a}↔#${b})`;
  widget.title.caption = path;
  widget.title.closable = true;
  add(widget);
  const notebook = extension(name) === 'ipynb';
  if (notebook && rendermime) {
    body.dataset.diff = 'loading';
    try {
      await nbdimeDiff(model, path, a, b, rendermime, content, banner);
      body.dataset.diff = 'nbdime';
      return widget;
    } catch (e) {
      // no nbdime on the server (501), or it could not read a version (422): the
      // sources' text diff below still shows what changed
      while (content.widgets.length > 1) {
        content.widgets[content.widgets.length - 1].dispose();
      }
      body.appendChild(
        el(
          'p',
          'jp-VolumeViewer-note jp-VolumeViewer-nbdimeFallback',
          `Showing the cells' sources as text: ${(e as Error).message}`
        )
      );
    }
  }
  body.dataset.diff = 'text';
  const read = async (seq: number): Promise<string | null> => {
    try {
      return await textOf(await model.readBlob(path, seq));
    } catch (e) {
      if ((e as { status?: number }).status === 404) {
        return ''; // absent at that commit: all lines added or removed
      }
      throw e;
    }
  };
  const [before, after] = await Promise.all([read(a), read(b)]);
  if (before === null || after === null) {
    body.appendChild(el('p', 'jp-VolumeViewer-note', 'Binary files differ.'));
    return widget;
  }
  const split = (t: string) => (t === '' ? [] : t.replace(/\n$/, '').split('\n'));
  // A notebook is compared as its cells' sources (its JSON would bury the change in
  // metadata and escapes); outputs are left out, as `nbdiff -s` does.
  const prepare = extension(name) === 'ipynb' ? notebookSource : (t: string) => t;
  const lines = lineDiff(split(prepare(before)), split(prepare(after)));
  if (lines === null) {
    body.appendChild(el('p', 'jp-VolumeViewer-note', 'These versions are too large to compare here.'));
    return widget;
  }
  const table = body.appendChild(el('div', 'jp-VolumeViewer-diff'));
  table.setAttribute('role', 'table');
  for (const line of lines) {
    const cls = line.op === '+' ? 'jp-mod-added' : line.op === '-' ? 'jp-mod-removed' : '';
    const row = table.appendChild(el('div', `jp-VolumeViewer-diffLine ${cls}`));
    row.setAttribute('role', 'row');
    row.appendChild(el('span', 'jp-VolumeViewer-diffOp', line.op));
    row.appendChild(el('span', 'jp-VolumeViewer-diffText', line.text));
  }
  if (!lines.some(l => l.op !== ' ')) {
    body.appendChild(el('p', 'jp-VolumeViewer-note', 'No differences in the text.'));
  }
  return widget;
}
