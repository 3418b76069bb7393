/**
 * The left-sidebar panel: volume list, folder browser, uploads and history.
 *
 * It renders `VolumeModel` state on the model's signals and turns clicks, drops and
 * dialogs into model calls; no REST calls and no state of its own beyond what is shown.
 */
import { Dialog, InputDialog, showDialog, showErrorMessage } from '@jupyterlab/apputils';
import {
  LabIcon,
  addIcon,
  deleteIcon,
  downloadIcon,
  editIcon,
  fileIcon,
  fileUploadIcon,
  folderIcon,
  historyIcon,
  newFolderIcon,
  refreshIcon
} from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

import { ICommit, IDiffEntry, IEntry, IUpload, VolumeModel } from './model';

/** Bytes as B / KiB / MiB / GiB / TiB. */
export function formatSize(n: number | null | undefined): string {
  if (n === null || n === undefined) {
    return '';
  }
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

/** Short modification time: the time for today, else the date. */
function formatTime(seconds: number): string {
  if (seconds <= 0) {
    return '';
  }
  const d = new Date(seconds * 1000);
  const today = new Date().toDateString() === d.toDateString();
  return today
    ? d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
    : d.toLocaleDateString();
}

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  cls = '',
  text?: string
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (cls) {
    node.className = cls;
  }
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}

function button(
  label: string,
  onClick: () => void,
  options: { icon?: LabIcon; text?: string; cls?: string } = {}
): HTMLButtonElement {
  const b = el('button', `jp-Button jp-mod-minimal jp-VolumePanel-button ${options.cls ?? ''}`);
  b.type = 'button';
  b.title = label;
  b.setAttribute('aria-label', label);
  if (options.icon) {
    b.appendChild(options.icon.element({ tag: 'span', className: 'jp-VolumePanel-icon' }));
  }
  if (options.text) {
    b.appendChild(el('span', 'jp-VolumePanel-buttonText', options.text));
  }
  b.addEventListener('click', event => {
    event.stopPropagation();
    onClick();
  });
  return b;
}

async function confirm(title: string, body: string, label: string): Promise<boolean> {
  const result = await showDialog({
    title,
    body,
    buttons: [Dialog.cancelButton(), Dialog.warnButton({ label })]
  });
  return result.button.accept;
}

export class VolumePanel extends Widget {
  private _notice = el('div', 'jp-VolumePanel-notice');
  private _volumes = el('ul', 'jp-VolumePanel-volumes');
  private _content = el('div', 'jp-VolumePanel-content');
  private _tabs = el('div', 'jp-VolumePanel-tabs');
  private _files = el('div', 'jp-VolumePanel-files');
  private _crumbs = el('div', 'jp-VolumePanel-breadcrumbs');
  private _uploads = el('div', 'jp-VolumePanel-uploads');
  private _listing = el('div', 'jp-VolumePanel-listing');
  private _history = el('div', 'jp-VolumePanel-history');
  private _fileInput = el('input');
  private _dragDepth = 0;

  constructor(readonly model: VolumeModel) {
    super();
    this.addClass('jp-VolumePanel');
    this.title.caption = 'Volumes';
    this._build();
    model.statusChanged.connect(this._renderStatus, this);
    model.volumesChanged.connect(this._renderVolumes, this);
    model.folderChanged.connect(this._renderFolder, this);
    model.historyChanged.connect(this._renderHistory, this);
    model.uploadsChanged.connect(this._renderUploads, this);
    this._renderStatus();
    this._renderVolumes();
    this._renderFolder();
  }

  /** Run a model action; show its error in a dialog instead of failing silently. */
  private async _act(title: string, action: () => Promise<unknown>): Promise<void> {
    try {
      await action();
    } catch (e) {
      await showErrorMessage(title, (e as Error).message);
    }
  }

  // -- layout ------------------------------------------------------------------------------
  private _build(): void {
    const node = this.node;
    const header = el('div', 'jp-VolumePanel-header');
    header.appendChild(el('h2', 'jp-VolumePanel-title', 'Volumes'));
    header.appendChild(
      button('Refresh volumes', () => void this._act('Refresh failed', () => this._refreshAll()), {
        icon: refreshIcon
      })
    );
    header.appendChild(
      button('New volume', () => void this._newVolume(), { icon: addIcon, cls: 'jp-VolumePanel-newVolume' })
    );
    node.appendChild(header);
    node.appendChild(this._notice);
    node.appendChild(this._volumes);

    const filesTab = button('Files', () => this._showTab('files'), { text: 'Files', icon: folderIcon });
    filesTab.dataset.tab = 'files';
    const historyTab = button('History', () => this._showTab('history'), {
      text: 'History',
      icon: historyIcon
    });
    historyTab.dataset.tab = 'history';
    this._tabs.append(filesTab, historyTab);
    this._tabs.setAttribute('role', 'tablist');

    const toolbar = el('div', 'jp-VolumePanel-toolbar');
    this._fileInput.type = 'file';
    this._fileInput.multiple = true;
    this._fileInput.className = 'jp-VolumePanel-fileInput';
    this._fileInput.style.display = 'none';
    this._fileInput.addEventListener('change', () => {
      const files = Array.from(this._fileInput.files ?? []);
      this._fileInput.value = '';
      void this._upload(files);
    });
    toolbar.append(
      button('Upload files', () => this._fileInput.click(), { icon: fileUploadIcon, text: 'Upload' }),
      button('New folder', () => void this._newFolder(), { icon: newFolderIcon }),
      button('Refresh folder', () => void this._act('Refresh failed', () => this.model.refreshFolder()), {
        icon: refreshIcon
      }),
      this._fileInput
    );
    this._files.append(this._crumbs, toolbar, this._uploads, this._listing);
    this._files.appendChild(el('div', 'jp-VolumePanel-dropHint', 'Drop files here to upload them'));
    this._setupDrop(this._files);

    this._content.append(this._tabs, this._files, this._history);
    node.appendChild(this._content);
    this._showTab('files');
  }

  private _showTab(tab: 'files' | 'history'): void {
    this._files.hidden = tab !== 'files';
    this._history.hidden = tab !== 'history';
    for (const b of Array.from(this._tabs.querySelectorAll('button'))) {
      const on = (b as HTMLElement).dataset.tab === tab;
      b.classList.toggle('jp-mod-active', on);
      b.setAttribute('aria-selected', String(on));
    }
    if (tab === 'history') {
      void this._act('Cannot load history', () => this.model.loadHistory());
    }
  }

  private _setupDrop(zone: HTMLElement): void {
    const hasFiles = (e: DragEvent) => Array.from(e.dataTransfer?.types ?? []).includes('Files');
    zone.addEventListener('dragenter', e => {
      if (!hasFiles(e)) {
        return;
      }
      e.preventDefault();
      this._dragDepth++;
      zone.classList.add('jp-mod-dropTarget');
    });
    zone.addEventListener('dragover', e => {
      if (!hasFiles(e)) {
        return;
      }
      e.preventDefault();
      e.stopPropagation();
      if (e.dataTransfer) {
        e.dataTransfer.dropEffect = 'copy';
      }
    });
    zone.addEventListener('dragleave', () => {
      this._dragDepth = Math.max(0, this._dragDepth - 1);
      if (this._dragDepth === 0) {
        zone.classList.remove('jp-mod-dropTarget');
      }
    });
    zone.addEventListener('drop', e => {
      e.preventDefault();
      e.stopPropagation();
      this._dragDepth = 0;
      zone.classList.remove('jp-mod-dropTarget');
      const files = Array.from(e.dataTransfer?.files ?? []);
      if (files.length) {
        void this._upload(files);
      }
    });
  }

  private async _refreshAll(): Promise<void> {
    await this.model.checkServer();
    if (this.model.status === 'ok') {
      await this.model.refreshVolumes();
      await this.model.refreshFolder();
    }
  }

  // -- rendering ----------------------------------------------------------------------------
  private _renderStatus(): void {
    const m = this.model;
    this._notice.replaceChildren();
    this._notice.dataset.status = m.status;
    if (m.status === 'checking') {
      this._notice.textContent = 'Connecting to the jupyter-volume server extension…';
    } else if (m.statusMessage) {
      // Commands in `backticks` become code the user can copy.
      m.statusMessage.split('`').forEach((part, i) => {
        this._notice.appendChild(i % 2 ? el('code', '', part) : document.createTextNode(part));
      });
    }
    this._notice.hidden = m.status === 'ok' && !m.statusMessage;
    this.node.classList.toggle('jp-mod-serverMissing', m.status !== 'ok' && m.status !== 'checking');
  }

  private _renderVolumes(): void {
    const m = this.model;
    this._volumes.replaceChildren();
    if (m.status === 'ok' && m.volumes.length === 0) {
      this._volumes.appendChild(
        el('li', 'jp-VolumePanel-empty', 'No volumes yet: create one with the + button.')
      );
    }
    for (const v of m.volumes) {
      const li = el('li', 'jp-VolumePanel-volume');
      li.dataset.volume = v.name;
      li.title = `${v.name}\ncreated ${new Date(v.created_at).toLocaleString()} by ${v.created_by}`;
      li.classList.toggle('jp-mod-selected', v.name === m.volume);
      li.appendChild(el('span', 'jp-VolumePanel-volumeName', v.name));
      li.append(
        button(`Rename volume ${v.name}`, () => void this._renameVolume(v.name), { icon: editIcon }),
        button(`Delete volume ${v.name}`, () => void this._deleteVolume(v.name), { icon: deleteIcon })
      );
      li.addEventListener('click', () => void this._act('Cannot open volume', () => m.open(v.name)));
      this._volumes.appendChild(li);
    }
    this._content.hidden = m.volume === null;
  }

  private _renderFolder(): void {
    const m = this.model;
    this._content.hidden = m.volume === null;
    this._crumbs.replaceChildren();
    this._listing.replaceChildren();
    if (m.volume === null) {
      return;
    }
    const parts = m.path ? m.path.split('/') : [];
    const crumb = (label: string, path: string) => {
      const a = el('a', 'jp-VolumePanel-crumb', label);
      a.href = '#';
      a.dataset.path = path;
      a.addEventListener('click', e => {
        e.preventDefault();
        void this._act('Cannot open folder', () => m.cd(path));
      });
      return a;
    };
    this._crumbs.appendChild(crumb(m.volume, ''));
    parts.forEach((part, i) => {
      this._crumbs.appendChild(el('span', 'jp-VolumePanel-crumbSep', '/'));
      this._crumbs.appendChild(crumb(part, parts.slice(0, i + 1).join('/')));
    });

    const table = el('table', 'jp-VolumePanel-table');
    const head = el('tr');
    head.append(
      el('th', 'jp-VolumePanel-nameHead', 'Name'),
      el('th', 'jp-VolumePanel-size', 'Size'),
      el('th', 'jp-VolumePanel-mtime', 'Modified')
    );
    table.appendChild(el('thead')).appendChild(head);
    const body = table.appendChild(el('tbody'));
    if (m.entries.length === 0) {
      const tr = body.appendChild(el('tr'));
      const td = tr.appendChild(el('td', 'jp-VolumePanel-empty', 'This folder is empty. Upload or drop files here.'));
      td.colSpan = 3;
    }
    for (const entry of m.entries) {
      body.appendChild(this._entryRow(entry));
    }
    this._listing.appendChild(table);
    if (m.entries.length < m.total) {
      this._listing.appendChild(
        button(`Show more (${m.entries.length} of ${m.total})`, () => void this._act('Cannot list', () => m.loadMore()), {
          text: `Show more (${m.entries.length} of ${m.total})`
        })
      );
    }
  }

  private _entryRow(entry: IEntry): HTMLTableRowElement {
    const m = this.model;
    const tr = el('tr', 'jp-VolumePanel-entry');
    tr.dataset.path = entry.path;
    tr.dataset.type = entry.type;
    const name = el('td', 'jp-VolumePanel-name');
    const inner = name.appendChild(el('div', 'jp-VolumePanel-nameInner'));
    const isDir = entry.type === 'directory';
    inner.appendChild((isDir ? folderIcon : fileIcon).element({ tag: 'span', className: 'jp-VolumePanel-icon' }));
    const label = inner.appendChild(el(isDir ? 'a' : 'span', 'jp-VolumePanel-entryName', entry.name));
    if (isDir) {
      (label as HTMLAnchorElement).href = '#';
      label.addEventListener('click', e => {
        e.preventDefault();
        void this._act('Cannot open folder', () => m.cd(entry.path));
      });
    }
    name.title = entry.path;
    const actions = el('div', 'jp-VolumePanel-actions');
    if (entry.type === 'file') {
      actions.appendChild(button(`Download ${entry.name}`, () => m.download(entry), { icon: downloadIcon }));
    }
    actions.append(
      button(`Rename ${entry.name}`, () => void this._rename(entry), { icon: editIcon }),
      button(`Delete ${entry.name}`, () => void this._delete(entry), { icon: deleteIcon })
    );
    const mtime = el('td', 'jp-VolumePanel-mtime', formatTime(entry.mtime));
    mtime.title = entry.mtime > 0 ? new Date(entry.mtime * 1000).toLocaleString() : '';
    // The actions float over the row's right end (shown on hover and keyboard focus);
    // they are not a column, so narrow sidebars keep room for the name.
    mtime.appendChild(actions);
    tr.append(name, el('td', 'jp-VolumePanel-size', formatSize(entry.size)), mtime);
    return tr;
  }

  private _renderUploads(): void {
    const ups = this.model.uploads;
    this._uploads.replaceChildren();
    this._uploads.hidden = ups.length === 0;
    for (const u of ups) {
      this._uploads.appendChild(this._uploadRow(u));
    }
    if (ups.some(u => u.state === 'done' || u.state === 'error')) {
      this._uploads.appendChild(button('Clear finished uploads', () => this.model.clearUploads(), { text: 'Clear' }));
    }
  }

  private _uploadRow(u: IUpload): HTMLElement {
    const row = el('div', `jp-VolumePanel-upload jp-mod-${u.state}`);
    row.dataset.path = u.path;
    row.dataset.state = u.state;
    row.appendChild(el('span', 'jp-VolumePanel-uploadName', u.name));
    const bar = el('progress', 'jp-VolumePanel-progress');
    bar.max = Math.max(u.total, 1);
    bar.value = u.total === 0 && u.state === 'done' ? 1 : u.loaded;
    row.appendChild(bar);
    const what = {
      uploading: `${formatSize(u.loaded)} of ${formatSize(u.total)}`,
      committing: 'verifying and saving…',
      done: 'uploaded',
      error: `failed: ${u.error ?? ''}`
    }[u.state];
    row.appendChild(el('span', 'jp-VolumePanel-uploadState', what));
    return row;
  }

  private _renderHistory(): void {
    const m = this.model;
    this._history.replaceChildren();
    if (m.volume === null) {
      return;
    }
    const list = el('ol', 'jp-VolumePanel-commits');
    for (const c of m.history) {
      list.appendChild(this._commitRow(c));
    }
    if (m.history.length === 0) {
      list.appendChild(el('li', 'jp-VolumePanel-empty', 'No commits yet.'));
    }
    this._history.appendChild(list);
    if (m.historyMore) {
      this._history.appendChild(el('div', 'jp-VolumePanel-more', 'Older commits: use `%volume history` or `jupyter volume history`.'));
    }
  }

  private _commitRow(c: ICommit): HTMLElement {
    const li = el('li', 'jp-VolumePanel-commit');
    li.dataset.seq = String(c.seq);
    const head = li.appendChild(el('div', 'jp-VolumePanel-commitHead'));
    head.appendChild(el('span', 'jp-VolumePanel-seq', `#${c.seq}`));
    head.appendChild(el('span', 'jp-VolumePanel-message', c.message || c.kind));
    const meta = li.appendChild(el('div', 'jp-VolumePanel-commitMeta'));
    meta.textContent =
      `${new Date(c.time).toLocaleString()} · ${c.author}` +
      (c.added || c.modified || c.deleted ? ` · +${c.added} ~${c.modified} −${c.deleted}` : '');
    const actions = li.appendChild(el('div', 'jp-VolumePanel-commitActions'));
    const diffBox = el('div', 'jp-VolumePanel-diff');
    diffBox.hidden = true;
    if (c.seq > 0) {
      actions.appendChild(
        button(`Show changes of commit ${c.seq}`, () => void this._toggleDiff(c, diffBox), { text: 'Changes' })
      );
    }
    actions.appendChild(
      button(`Restore commit ${c.seq}`, () => void this._restore(c), { text: 'Restore', cls: 'jp-VolumePanel-restore' })
    );
    li.appendChild(diffBox);
    return li;
  }

  private async _toggleDiff(c: ICommit, box: HTMLElement): Promise<void> {
    if (!box.hidden) {
      box.hidden = true;
      return;
    }
    await this._act('Cannot show changes', async () => {
      const changes = await this.model.diff(c.seq - 1, c.seq);
      box.replaceChildren();
      if (changes.length === 0) {
        box.appendChild(el('div', 'jp-VolumePanel-empty', 'No changes.'));
      }
      for (const d of changes) {
        box.appendChild(this._diffRow(c, d));
      }
      box.hidden = false;
    });
  }

  private _diffRow(c: ICommit, d: IDiffEntry): HTMLElement {
    const row = el('div', `jp-VolumePanel-change jp-mod-${d.change}`);
    row.dataset.path = d.path;
    const sign = { added: '+', modified: '~', deleted: '−' }[d.change];
    row.appendChild(el('span', 'jp-VolumePanel-changeSign', sign));
    row.appendChild(el('span', 'jp-VolumePanel-changePath', d.path));
    const sizes = d.change === 'modified' ? `${formatSize(d.old_size)} → ${formatSize(d.new_size)}` : formatSize(d.new_size ?? d.old_size);
    row.appendChild(el('span', 'jp-VolumePanel-changeSize', sizes));
    row.appendChild(
      button(`Restore ${d.path} as of commit ${c.seq}`, () => void this._restore(c, d.path), { icon: historyIcon })
    );
    return row;
  }

  // -- actions --------------------------------------------------------------------------------
  private async _newVolume(): Promise<void> {
    const r = await InputDialog.getText({ title: 'New volume', placeholder: 'letters, digits, . _ -', okLabel: 'Create' });
    if (r.button.accept && r.value) {
      await this._act('Cannot create volume', () => this.model.createVolume(r.value!.trim()));
    }
  }

  private async _renameVolume(name: string): Promise<void> {
    const r = await InputDialog.getText({ title: `Rename volume ${name}`, text: name, okLabel: 'Rename' });
    if (r.button.accept && r.value && r.value !== name) {
      await this._act('Cannot rename volume', () => this.model.renameVolume(name, r.value!.trim()));
    }
  }

  private async _deleteVolume(name: string): Promise<void> {
    if (await confirm('Delete volume', `Delete volume "${name}" with all its files and its whole history? This cannot be undone.`, 'Delete')) {
      await this._act('Cannot delete volume', () => this.model.deleteVolume(name));
    }
  }

  private async _newFolder(): Promise<void> {
    const r = await InputDialog.getText({ title: 'New folder', placeholder: 'folder name', okLabel: 'Create' });
    if (r.button.accept && r.value) {
      await this._act('Cannot create folder', () => this.model.newFolder(r.value!.trim()));
    }
  }

  private async _rename(entry: IEntry): Promise<void> {
    const r = await InputDialog.getText({ title: `Rename ${entry.name}`, text: entry.name, okLabel: 'Rename' });
    if (r.button.accept && r.value && r.value !== entry.name) {
      await this._act('Cannot rename', () => this.model.rename(entry, r.value!.trim()));
    }
  }

  private async _delete(entry: IEntry): Promise<void> {
    const what = entry.type === 'directory' ? 'the folder' : 'the file';
    const extra = entry.type === 'directory' ? ' and everything in it' : '';
    if (await confirm('Delete', `Delete ${what} "${entry.path}"${extra}? Earlier versions stay in the history.`, 'Delete')) {
      await this._act('Cannot delete', () => this.model.remove(entry));
    }
  }

  private async _upload(files: File[]): Promise<void> {
    if (!files.length || this.model.volume === null) {
      return;
    }
    const failed = await this.model.upload(files, path =>
      confirm('File exists', `"${path}" already exists in volume ${this.model.volume}. Replace it? The old version stays in the history.`, 'Replace')
    );
    if (failed.length) {
      await showErrorMessage('Upload failed', failed.map(u => `${u.path}: ${u.error}`).join('\n'));
    }
  }

  private async _restore(c: ICommit, path?: string): Promise<void> {
    const what = path ? `"${path}"` : `the whole volume ${this.model.volume}`;
    const ok = await confirm(
      'Restore',
      `Restore ${what} as it was at commit #${c.seq}? This is recorded as a new commit; nothing in the history is lost.`,
      'Restore'
    );
    if (ok) {
      await this._act('Cannot restore', () => this.model.restore(c.seq, path));
    }
  }
}
