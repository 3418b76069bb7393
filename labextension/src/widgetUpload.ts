/**
 * Uploads of any size for the notebook widget (`VolumeBrowser`), through the server's
 * chunked REST upload instead of the kernel connection.
 *
 * The widget renders a hidden marker (`.jv-web-upload`, its data attributes name the
 * volume, its id, the store, the folder, overwrite and read-only) and a hidden text
 * field (`.jv-web-upload-report`); it fills the marker in only when the kernel's server
 * serves the volume's store. Here each widget found in the page gets an Upload button
 * in place of the widget's own uploader (`.widget-upload`, which sends the files in
 * chunks over the kernel connection, for frontends without this extension), so the
 * bytes go to the server and never through the kernel. Progress, speed, cancel and
 * errors show next to the button; when the files are done, a JSON report written into
 * the text field tells the kernel, which lists the new files.
 */
import { IVersion, IUpload, VolumeModel, isFinished } from './model';
import { requestAPI } from './handler';
import { el, formatSize } from './dom';

const DONE = 'data-jv-uploader';



/** Hand the kernel the outcome through the widget's hidden text field. */
function report(root: Element, data: unknown): void {
  const input = root.querySelector<HTMLInputElement>('.jv-web-upload-report input');
  if (!input) {
    return;
  }
  input.value = JSON.stringify(data);
  input.dispatchEvent(new Event('input', { bubbles: true }));
  input.dispatchEvent(new Event('change', { bubbles: true }));
}

function uploadRow(u: IUpload, model: VolumeModel): HTMLElement {
  const row = el('div', `jv-web-upload-row jp-mod-${u.state}`);
  row.dataset.path = u.path;
  row.dataset.state = u.state;
  row.appendChild(el('span', 'jv-web-upload-name', u.name));
  const bar = el('progress');
  bar.max = Math.max(u.total, 1);
  bar.value = u.total === 0 && u.state === 'done' ? 1 : u.loaded;
  bar.setAttribute('aria-label', `Progress of ${u.name}`);
  row.appendChild(bar);
  const speed = u.speed ? ` · ${formatSize(Math.round(u.speed))}/s` : '';
  const text = {
    queued: 'waiting',
    uploading: `${formatSize(u.loaded)} of ${formatSize(u.total)}${speed}`,
    committing: 'verifying and saving…',
    done: 'uploaded',
    error: `failed: ${u.error ?? ''}`,
    skipped: 'already there: tick overwrite to replace it',
    cancelled: 'cancelled'
  }[u.state];
  const state = row.appendChild(el('span', 'jv-web-upload-state', text));
  if (u.state === 'error' || u.state === 'skipped') {
    state.setAttribute('role', 'alert');
  }
  if (!isFinished(u) && u.state !== 'committing') {
    const cancel = row.appendChild(el('button', 'jupyter-button widget-button', 'Cancel'));
    cancel.type = 'button';
    cancel.setAttribute('aria-label', `Cancel upload of ${u.name}`);
    cancel.addEventListener('click', () => model.cancelUpload(u.key));
  }
  return row;
}

/** Why the server cannot take the upload for this widget, or null if it can. */
async function refusal(marker: HTMLElement): Promise<string | null> {
  const d = marker.dataset;
  if (d.readOnly === '1') {
    return 'You are browsing an old commit: click "Back to head" to upload.';
  }
  let server: IVersion;
  try {
    server = await requestAPI<IVersion>('version');
  } catch (e) {
    return (
      'Uploads go through the jupyter-volume server extension, which did not answer ' +
      `(${(e as Error).message}).`
    );
  }
  if (server.store !== d.store) {
    return (
      `This volume is in store ${d.store}, the Jupyter server uses ${server.store}: upload ` +
      'with the Python API (vol.batch_upload) instead.'
    );
  }
  const { volumes } = await requestAPI<{ volumes: { name: string; id: string }[] }>('volumes');
  if (!volumes.some(v => v.name === d.volume && v.id === d.volumeId)) {
    return `Volume ${d.volume} no longer exists (it was deleted or replaced): re-run the cell.`;
  }
  return null;
}

async function uploadInto(root: Element, box: HTMLElement, files: File[]): Promise<void> {
  const marker = root.querySelector<HTMLElement>('.jv-web-upload');
  box.replaceChildren();
  if (!marker || !files.length) {
    return;
  }
  const why = await refusal(marker);
  if (why) {
    const msg = box.appendChild(el('div', 'jv-web-upload-error', why));
    msg.setAttribute('role', 'alert');
    return;
  }
  const d = marker.dataset;
  const model = new VolumeModel();
  model.status = 'ok';
  model.volume = d.volume ?? null;
  model.kind = 'volume';
  model.path = d.path ?? '';
  const force = d.force === '1';
  model.uploadsChanged.connect(() => {
    box.replaceChildren(...model.uploads.map(u => uploadRow(u, model)));
  });
  let failed: IUpload[] = [];
  try {
    failed = await model.upload(files, async () => force);
  } catch (e) {
    const msg = box.appendChild(el('div', 'jv-web-upload-error', (e as Error).message));
    msg.setAttribute('role', 'alert');
    return;
  }
  report(root, {
    uploaded: model.uploads.filter(u => u.state === 'done').map(u => u.path),
    failed: failed.map(u => [u.path, u.error ?? 'failed']),
    skipped: model.uploads.filter(u => u.state === 'skipped').map(u => u.path)
  });
}

/**
 * True if this page's server takes uploads into the widget's store: its server
 * extension answers and serves that store. Else the widget keeps its own uploader.
 */
async function serverTakes(marker: HTMLElement): Promise<boolean> {
  try {
    const server = await requestAPI<IVersion>('version');
    return server.store === marker.dataset.store;
  } catch {
    return false;
  }
}

function setup(root: Element): void {
  root.setAttribute(DONE, '1');
  const marker = root.querySelector<HTMLElement>('.jv-web-upload');
  if (!marker) {
    return;
  }
  void serverTakes(marker).then(yes => {
    if (yes) {
      replaceUploader(root);
    }
  });
}

function replaceUploader(root: Element): void {
  const fileUpload = root.querySelector<HTMLElement>('.widget-upload');
  const bar = fileUpload?.parentElement;
  if (!fileUpload || !bar) {
    return;
  }
  const input = el('input', 'jv-web-upload-input');
  input.type = 'file';
  input.multiple = true;
  input.hidden = true;
  const button = el('button', 'jupyter-button widget-button jv-web-upload-button');
  button.type = 'button';
  button.title = 'Upload files of any size into this folder (through the Jupyter server)';
  button.setAttribute('aria-label', 'Upload');
  button.appendChild(el('i', 'fa fa-upload'));
  button.appendChild(document.createTextNode(' Upload'));
  button.addEventListener('click', () => input.click());
  const box = el('div', 'jv-web-uploads');
  box.setAttribute('aria-live', 'polite');
  input.addEventListener('change', () => {
    const files = Array.from(input.files ?? []);
    input.value = '';
    button.disabled = true;
    void uploadInto(root, box, files).finally(() => {
      button.disabled = false;
    });
  });
  fileUpload.style.display = 'none';
  bar.insertBefore(button, fileUpload);
  bar.insertBefore(input, fileUpload);
  bar.insertAdjacentElement('afterend', box);
}

/**
 * Give every `VolumeBrowser` widget in the page (now and later) the REST uploader,
 * where this page's server can take its uploads.
 */
export function watchWidgetUploads(): void {
  let queued = false;
  const scan = () => {
    queued = false;
    for (const root of Array.from(document.querySelectorAll(`.jv-browser:not([${DONE}])`))) {
      if (root.querySelector('.jv-web-upload') && root.querySelector('.widget-upload')) {
        setup(root);
      }
    }
  };
  new MutationObserver(() => {
    if (!queued) {
      queued = true;
      requestAnimationFrame(scan);
    }
  }).observe(document.body, { childList: true, subtree: true });
  scan();
}
