/**
 * The left-sidebar panel: the list of volumes, network file systems and Dicts, a file
 * browser, transfers and history.
 *
 * It renders `VolumeModel` state on the model's signals and turns clicks, keys, drops
 * and dialogs into model calls; its own state is only what the user selects (rows,
 * commits to compare) and what is folded.
 */
import { Dialog, InputDialog, showDialog, showErrorMessage } from '@jupyterlab/apputils';
import {
  LabIcon,
  addIcon,
  caretDownIcon,
  caretRightIcon,
  closeIcon,
  deleteIcon,
  downloadIcon,
  editIcon,
  ellipsesIcon,
  fileIcon,
  fileUploadIcon,
  folderIcon,
  historyIcon,
  newFolderIcon,
  refreshIcon
} from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

import {
  ICommit,
  IDiffEntry,
  IDictEntry,
  IEntry,
  IUpload,
  IVolume,
  Kind,
  SortKey,
  VolumeModel,
  badName,
  isFinished
} from './model';
import { el, formatSize } from './dom';

/** What the panel needs from JupyterLab: file-type icons and the main area. */
export interface IPanelHost {
  iconFor(name: string): LabIcon;
  openFile(entry: IEntry): Promise<void>;
  openDiff(path: string, a: number, b: number): Promise<void>;
}

const FALLBACK_HOST: IPanelHost = {
  iconFor: () => fileIcon,
  openFile: async () => undefined,
  openDiff: async () => undefined
};


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

/** "just now", "5 minutes ago", "3 days ago", as jupyterlab-git's history. */
export function relativeTime(date: Date, now: Date = new Date()): string {
  const s = Math.round((now.getTime() - date.getTime()) / 1000);
  if (s < 45) {
    return 'just now';
  }
  const steps: [number, Intl.RelativeTimeFormatUnit][] = [
    [60, 'second'],
    [60, 'minute'],
    [24, 'hour'],
    [30, 'day'],
    [12, 'month'],
    [Infinity, 'year']
  ];
  let v = s;
  let unit: Intl.RelativeTimeFormatUnit = 'second';
  for (const [size, u] of steps) {
    unit = u;
    if (Math.abs(v) < size) {
      break;
    }
    v = Math.round(v / size);
  }
  return new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' }).format(-v, unit);
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

/** Give a button made by `button` another label (its text too, if it shows one). */
function relabel(b: HTMLButtonElement, label: string): void {
  b.title = label;
  b.setAttribute('aria-label', label);
  const text = b.querySelector('.jp-VolumePanel-buttonText');
  if (text) {
    text.textContent = label;
  }
}

/**
 * A box drawn anew as its pages load, under its "Show more" button: a folder's listing,
 * a Dict's entries, the history. Drawn anew with the rest, the button that had the
 * keyboard focus was gone and the focus with it (to the document, then the main area):
 * the button is one element for good, never removed while shown (added again, even in
 * place, it would lose the focus), and focus that was in the box goes back in it after
 * each drawing (see `_refocus`).
 */
class PagedBox {
  /**
   * @param rows - selects the box's rows (a file, a Dict entry, a commit)
   * @param key - the `data-` attribute naming a row (its path, id, seq)
   */
  constructor(
    readonly box: HTMLElement,
    readonly more: HTMLButtonElement,
    private _rows: string,
    private _key: string
  ) {}

  /**
   * Replace the box's content with `content` (none: an empty box), "Show more" after it
   * if `more`; `onRow` is told of a row the focus goes to (the listing's cursor).
   */
  redraw(content: Node | null, more: boolean, onRow?: (row: HTMLElement) => void): void {
    const { box } = this;
    const focused = document.activeElement;
    const hadFocus = focused instanceof HTMLElement && focused !== box && box.contains(focused);
    const drawn = new Set(this._rowsNow().map(r => r.dataset[this._key]));
    for (const child of Array.from(box.children)) {
      if (child !== this.more) {
        child.remove();
      }
    }
    if (content) {
      box.insertBefore(content, this.more.parentNode === box ? this.more : null);
    }
    if (!more) {
      this.more.remove();
    } else if (this.more.parentNode !== box) {
      box.appendChild(this.more);
    }
    if (hadFocus && !box.contains(focused)) {
      this._refocus(focused, drawn, onRow);
    }
  }

  private _rowsNow(): HTMLElement[] {
    return Array.from(this.box.querySelectorAll<HTMLElement>(this._rows));
  }

  /**
   * Put the focus back in the box drawn anew under it: on the control that had it if it
   * is drawn again (the same row's button, the same sort button), else on the first row
   * this drawing added (the last page's, after "Show more"), else on the box. The
   * keyboard user stays where they were, never thrown to the main area.
   */
  private _refocus(old: HTMLElement, drawn: Set<string | undefined>, onRow?: (row: HTMLElement) => void): void {
    const rowOf = (e: HTMLElement) => e.closest<HTMLElement>(this._rows)?.dataset[this._key];
    const row = rowOf(old);
    const label = old.getAttribute('aria-label');
    const same = Array.from(this.box.querySelectorAll<HTMLElement>(`button, input, ${this._rows}`)).find(
      e =>
        e.tagName === old.tagName &&
        rowOf(e) === row &&
        e.getAttribute('aria-label') === label &&
        e.dataset.sort === old.dataset.sort
    );
    const added = same ? undefined : this._rowsNow().find(r => !drawn.has(r.dataset[this._key]));
    if (added) {
      onRow?.(added);
    }
    const target = same ?? added ?? this.box;
    if (target.tabIndex < 0 && !target.hasAttribute('tabindex')) {
      target.tabIndex = -1; // a commit, a Dict entry, the box: focusable, not a Tab stop
    }
    target.focus({ preventScroll: true });
  }
}

async function confirm(title: string, body: string, label: string): Promise<boolean> {
  const result = await showDialog({
    title,
    body,
    buttons: [Dialog.cancelButton(), Dialog.warnButton({ label })]
  });
  return result.button.accept;
}

const KIND_LABEL: Record<Kind, string> = { volume: 'volume', nfs: 'NFS', dict: 'Dict' };
const KIND_NAME: Record<Kind, string> = {
  volume: 'volume',
  nfs: 'network file system',
  dict: 'Dict'
};

/**
 * The change list of a commit as the history counts it: files. A folder row is kept
 * only when nothing below it is listed (an empty folder made or removed); otherwise it
 * is implied by its files, and listing it too made "−2" show three deletions.
 */
export function countedChanges(changes: IDiffEntry[]): IDiffEntry[] {
  return changes.filter(
    d =>
      d.type !== 'directory' || !changes.some(o => o !== d && o.path.startsWith(d.path + '/'))
  );
}

export class VolumePanel extends Widget {
  private _notice = el('div', 'jp-VolumePanel-notice');
  private _listHead = el('div', 'jp-VolumePanel-listHead');
  private _volumes = el('ul', 'jp-VolumePanel-volumes');
  private _content = el('div', 'jp-VolumePanel-content');
  private _tabs = el('div', 'jp-VolumePanel-tabs');
  private _files = el('div', 'jp-VolumePanel-files');
  private _crumbs = el('div', 'jp-VolumePanel-breadcrumbs');
  private _atBanner = el('div', 'jp-VolumePanel-atBanner');
  private _toolbar = el('div', 'jp-VolumePanel-toolbar');
  private _uploads = el('div', 'jp-VolumePanel-uploads');
  private _uploadRows = new Map<number, HTMLElement>();
  private _loading = el('div', 'jp-VolumePanel-loading');
  private _listing = el('div', 'jp-VolumePanel-listing');
  /** The listing under "Show more (N of M)", relabelled as a large folder's pages load. */
  private _listingPages = new PagedBox(
    this._listing,
    button('Show more', () => void this._act('Cannot list', () => this.model.loadMore()), { text: 'Show more' }),
    'tr.jp-VolumePanel-entry',
    'path'
  );
  private _history = el('div', 'jp-VolumePanel-history');
  private _historyPages = new PagedBox(
    this._history,
    button('Show older commits', () => void this._act('Cannot load history', () => this.model.loadMoreHistory()), {
      text: 'Show older commits',
      cls: 'jp-VolumePanel-more'
    }),
    'li.jp-VolumePanel-commit',
    'seq'
  );
  private _historyKey = ''; // what the drawn history list shows (see _onHistoryChanged)
  private _dict = el('div', 'jp-VolumePanel-dict');
  private _dictPages = new PagedBox(
    this._dict,
    button('Show more entries', () => this._moreDictEntries(), { text: 'Show more' }),
    'tr.jp-VolumePanel-dictEntry',
    'id'
  );
  private _fileInput = el('input');
  private _menu: HTMLElement | null = null;
  private _dragDepth = 0;
  private _collapsed = false;
  private _selected = new Set<string>();
  private _anchor: string | null = null;
  private _cursor: string | null = null;
  private _compare: number[] = [];
  /** The volume whose commits `_compare` holds (kind and name). */
  private _compareOf = '';
  private _openDict: string | null = null;
  private _dictNext: string | null = null;
  private _dictEntries: IDictEntry[] = [];
  /** Counts Dict loads, so the answer of a superseded one (another Dict's) is dropped. */
  private _dictLoad = 0;
  /** The row a click sequence began on: a double click opens only that row. */
  private _pressed: string | null = null;

  constructor(
    readonly model: VolumeModel,
    private _host: IPanelHost = FALLBACK_HOST
  ) {
    super();
    this.addClass('jp-VolumePanel');
    this.title.caption = 'Volumes';
    this._build();
    model.statusChanged.connect(this._renderStatus, this);
    model.volumesChanged.connect(this._renderVolumes, this);
    model.folderChanged.connect(this._renderFolder, this);
    model.historyChanged.connect(this._onHistoryChanged, this);
    model.uploadsChanged.connect(this._renderUploads, this);
    model.loadingChanged.connect(this._renderLoading, this);
    this._renderStatus();
    this._renderVolumes();
    this._renderFolder();
    this._renderUploads();
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
      button('New volume', () => void this._newVolume('volume'), {
        icon: addIcon,
        cls: 'jp-VolumePanel-newVolume'
      })
    );
    node.appendChild(header);
    node.appendChild(this._notice);
    node.appendChild(this._listHead);
    node.appendChild(this._volumes);

    const filesTab = button('Files', () => this._showTab('files'), { text: 'Files', icon: folderIcon });
    filesTab.dataset.tab = 'files';
    const historyTab = button('History', () => this._showTab('history'), {
      text: 'History',
      icon: historyIcon
    });
    historyTab.dataset.tab = 'history';
    filesTab.setAttribute('role', 'tab');
    historyTab.setAttribute('role', 'tab');
    this._tabs.append(filesTab, historyTab);
    this._tabs.setAttribute('role', 'tablist');

    this._fileInput.type = 'file';
    this._fileInput.multiple = true;
    this._fileInput.className = 'jp-VolumePanel-fileInput';
    this._fileInput.style.display = 'none';
    this._fileInput.addEventListener('change', () => {
      const files = Array.from(this._fileInput.files ?? []);
      this._fileInput.value = '';
      void this._upload(files);
    });
    this._toolbar.append(
      button('Upload files', () => this._fileInput.click(), {
        icon: fileUploadIcon,
        text: 'Upload',
        cls: 'jp-VolumePanel-write'
      }),
      button('New folder', () => void this._newFolder(), {
        icon: newFolderIcon,
        cls: 'jp-VolumePanel-write'
      }),
      button('Refresh folder', () => void this._act('Refresh failed', () => this.model.refreshFolder()), {
        icon: refreshIcon
      }),
      this._fileInput
    );
    const head = el('div', 'jp-VolumePanel-filesHead');
    head.append(this._crumbs, this._atBanner, this._toolbar, this._loading);
    this._loading.setAttribute('role', 'progressbar');
    this._loading.setAttribute('aria-label', 'Loading folder');
    this._loading.hidden = true;
    this._listing.tabIndex = 0;
    this._listing.setAttribute('aria-label', 'Files');
    this._listing.addEventListener('keydown', e => this._onKey(e));
    this._listing.addEventListener('scroll', () => this._loadMoreNearEnd());
    this._files.append(head, this._uploads, this._listing);
    this._files.appendChild(el('div', 'jp-VolumePanel-dropHint', 'Drop files here to upload them'));
    this._setupDrop(this._files);

    this._content.append(this._tabs, this._files, this._history, this._dict);
    node.appendChild(this._content);
    this._showTab('files');
    document.addEventListener('mousedown', e => {
      if (this._menu && !this._menu.contains(e.target as Node)) {
        this._closeMenu();
      }
    });
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
      if (this._openDict) {
        await this._loadDict(this._openDict);
      }
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
    const count = m.volumes.length + m.dicts.length;
    this._listHead.replaceChildren();
    const toggle = button(
      this._collapsed ? 'Show the list' : 'Hide the list',
      () => {
        this._collapsed = !this._collapsed;
        this._renderVolumes();
      },
      { icon: this._collapsed ? caretRightIcon : caretDownIcon, text: `All (${count})`, cls: 'jp-VolumePanel-collapse' }
    );
    toggle.setAttribute('aria-expanded', String(!this._collapsed));
    this._listHead.appendChild(toggle);
    const open = this._openDict ?? m.volume;
    if (this._collapsed && open) {
      this._listHead.appendChild(el('span', 'jp-VolumePanel-openName', open));
    }
    this._listHead.hidden = m.status !== 'ok';
    this._volumes.hidden = this._collapsed;
    this._volumes.replaceChildren();
    if (m.status === 'ok' && count === 0) {
      this._volumes.appendChild(
        el('li', 'jp-VolumePanel-empty', 'No volumes yet: create one with the + button.')
      );
    }
    for (const v of m.volumes) {
      this._volumes.appendChild(this._volumeRow(v));
    }
    for (const d of m.dicts) {
      const li = this._itemRow(d.name, 'dict', `${d.name}\nDict created ${new Date(d.created_at).toLocaleString()} by ${d.created_by}`);
      li.classList.toggle('jp-mod-selected', d.name === this._openDict);
      li.addEventListener('click', () => void this._act('Cannot open Dict', () => this._openDictView(d.name)));
      this._volumes.appendChild(li);
    }
    this._content.hidden = m.volume === null && this._openDict === null;
    this._renderMode();
  }

  private _itemRow(name: string, kind: Kind, title: string): HTMLLIElement {
    const li = el('li', 'jp-VolumePanel-volume');
    li.dataset.volume = name;
    li.dataset.kind = kind;
    li.title = title;
    // reachable by keyboard: Tab to it, Enter or Space opens it
    li.tabIndex = 0;
    li.addEventListener('keydown', e => {
      if ((e.key === 'Enter' || e.key === ' ') && e.target === li) {
        e.preventDefault();
        li.click();
      }
    });
    li.appendChild(el('span', 'jp-VolumePanel-volumeName', name));
    li.appendChild(el('span', `jp-VolumePanel-kind jp-mod-${kind}`, KIND_LABEL[kind]));
    return li;
  }

  private _volumeRow(v: IVolume): HTMLLIElement {
    const m = this.model;
    const what = KIND_NAME[v.kind];
    const li = this._itemRow(v.name, v.kind, `${v.name}\n${what} created ${new Date(v.created_at).toLocaleString()} by ${v.created_by}`);
    li.classList.toggle('jp-mod-selected', v.name === m.volume && v.kind === m.kind && !this._openDict);
    const actions = el('span', 'jp-VolumePanel-volumeActions');
    if (v.kind === 'volume') {
      actions.appendChild(button(`Rename volume ${v.name}`, () => void this._renameVolume(v.name), { icon: editIcon }));
      actions.appendChild(button(`Delete volume ${v.name}`, () => void this._deleteVolume(v.name, 'volume'), { icon: deleteIcon }));
    } else {
      actions.appendChild(
        button(`Delete network file system ${v.name}`, () => void this._deleteVolume(v.name, 'nfs'), { icon: deleteIcon })
      );
    }
    li.appendChild(actions);
    li.addEventListener('click', () => {
      this._openDict = null;
      this._selected.clear();
      void this._act(`Cannot open ${what}`, () => m.open(v.name, v.kind));
    });
    return li;
  }

  /** Show the Dict view or the volume tabs. */
  private _renderMode(): void {
    const dict = this._openDict !== null;
    this._dict.hidden = !dict;
    this._tabs.hidden = dict;
    if (dict) {
      this._files.hidden = true;
      this._history.hidden = true;
    } else if (this._files.hidden && this._history.hidden) {
      this._showTab('files');
    }
  }

  private _renderLoading(): void {
    this._loading.hidden = !this.model.loading;
    this._listing.setAttribute('aria-busy', String(this.model.loading));
  }

  private _renderFolder(): void {
    const m = this.model;
    this._content.hidden = m.volume === null && this._openDict === null;
    this._crumbs.replaceChildren();
    this._files.classList.toggle('jp-mod-readonly', m.at !== null);
    this._atBanner.replaceChildren();
    this._atBanner.hidden = m.at === null;
    if (m.volume === null) {
      this._listingPages.redraw(null, false);
      return;
    }
    if (m.at !== null) {
      this._atBanner.appendChild(el('span', '', `Files as they were at commit #${m.at} (read-only). `));
      this._atBanner.appendChild(
        button('Back to the latest files', () => void this._act('Cannot list files', () => m.browseAt(null)), {
          text: 'Back to latest'
        })
      );
    }
    const known = new Set(m.entries.map(e => e.path));
    for (const p of Array.from(this._selected)) {
      if (!known.has(p)) {
        this._selected.delete(p);
      }
    }
    const parts = m.path ? m.path.split('/') : [];
    const crumb = (label: string, path: string) => {
      const a = el('a', 'jp-VolumePanel-crumb', label);
      a.href = '#';
      a.dataset.path = path;
      a.addEventListener('click', e => {
        e.preventDefault();
        void this._act('Cannot open folder', () => this._cd(path));
      });
      return a;
    };
    this._crumbs.appendChild(crumb(m.volume, ''));
    parts.forEach((part, i) => {
      this._crumbs.appendChild(el('span', 'jp-VolumePanel-crumbSep', '/'));
      this._crumbs.appendChild(crumb(part, parts.slice(0, i + 1).join('/')));
    });

    const table = el('table', 'jp-VolumePanel-table');
    table.setAttribute('aria-multiselectable', 'true');
    const head = el('tr');
    const sortHead = (key: SortKey, label: string, cls: string) => {
      const th = el('th', cls);
      const on = m.sortKey === key;
      th.setAttribute('aria-sort', on ? (m.sortAscending ? 'ascending' : 'descending') : 'none');
      const b = el('button', 'jp-VolumePanel-sort', label + (on ? (m.sortAscending ? ' ▲' : ' ▼') : ''));
      b.type = 'button';
      b.dataset.sort = key;
      b.setAttribute('aria-label', `Sort by ${label.toLowerCase()}`);
      b.addEventListener('click', () => void this._sortBy(key));
      th.appendChild(b);
      return th;
    };
    const actionsHead = el('th', 'jp-VolumePanel-actionsCell');
    actionsHead.appendChild(el('span', 'jp-VolumePanel-srOnly', 'Actions'));
    head.append(
      sortHead('name', 'Name', 'jp-VolumePanel-nameHead'),
      sortHead('size', 'Size', 'jp-VolumePanel-size'),
      sortHead('mtime', 'Modified', 'jp-VolumePanel-mtime'),
      actionsHead
    );
    table.appendChild(el('thead')).appendChild(head);
    const body = table.appendChild(el('tbody'));
    if (m.entries.length === 0) {
      const tr = body.appendChild(el('tr'));
      const text = m.at === null ? 'This folder is empty. Upload or drop files here.' : 'This folder was empty at that commit.';
      const td = tr.appendChild(el('td', 'jp-VolumePanel-empty', text));
      td.colSpan = 4;
    }
    for (const entry of m.sortedEntries()) {
      body.appendChild(this._entryRow(entry));
    }
    const more = m.entries.length < m.total;
    if (more) {
      relabel(this._listingPages.more, `Show more (${m.entries.length} of ${m.total})`);
    }
    this._listingPages.redraw(table, more, tr => {
      // the cursor too: the arrow keys go on from this row
      this._cursor = tr.dataset.path ?? null;
      this._paintSelection();
    });
  }

  /** Sort the whole folder (the server does) and show it from the top. */
  private async _sortBy(key: SortKey): Promise<void> {
    await this._act('Cannot sort the folder', () => this.model.sortBy(key));
    this._listing.scrollTop = 0;
  }

  /** Scrolled near the end of a folder's loaded pages: load the next one (once). */
  private _loadMoreNearEnd(): void {
    const m = this.model;
    const l = this._listing;
    if (m.volume === null || m.loading || m.entries.length >= m.total) {
      return;
    }
    if (l.scrollTop + l.clientHeight >= l.scrollHeight - l.clientHeight / 2) {
      void this._act('Cannot list', () => m.loadMore());
    }
  }

  private _entryRow(entry: IEntry): HTMLTableRowElement {
    const m = this.model;
    const tr = el('tr', 'jp-VolumePanel-entry');
    tr.dataset.path = entry.path;
    tr.dataset.type = entry.type;
    tr.tabIndex = -1;
    const selected = this._selected.has(entry.path);
    tr.classList.toggle('jp-mod-selected', selected);
    tr.setAttribute('aria-selected', String(selected));
    const name = el('td', 'jp-VolumePanel-name');
    const inner = name.appendChild(el('div', 'jp-VolumePanel-nameInner'));
    const isDir = entry.type === 'directory';
    const icon = isDir ? folderIcon : this._host.iconFor(entry.name);
    inner.appendChild(icon.element({ tag: 'span', className: 'jp-VolumePanel-icon' }));
    // As in JupyterLab, a click selects and a double click (or Enter) opens, folders
    // too: a folder that opened on the first click of a double click had the second
    // land on the redrawn listing and open whatever row was then under the pointer.
    inner.appendChild(el('span', 'jp-VolumePanel-entryName', entry.name));
    name.title = entry.path;
    const actions = el('td', 'jp-VolumePanel-actionsCell');
    const box = actions.appendChild(el('div', 'jp-VolumePanel-actions'));
    if (entry.type === 'file') {
      box.appendChild(
        button(`Download ${entry.name}`, () => void this._act(`Cannot download ${entry.name}`, () => m.download(entry)), {
          icon: downloadIcon
        })
      );
    }
    box.appendChild(
      button(
        `More actions for ${entry.name}`,
        () => {
          this._select(entry.path, 'only');
          const r = box.getBoundingClientRect();
          this._openMenu(r.right, r.bottom);
        },
        { icon: ellipsesIcon }
      )
    );
    const mtime = el('td', 'jp-VolumePanel-mtime', formatTime(entry.mtime));
    mtime.title = entry.mtime > 0 ? new Date(entry.mtime * 1000).toLocaleString() : '';
    tr.append(name, el('td', 'jp-VolumePanel-size', isDir ? '' : formatSize(entry.size)), mtime, actions);
    tr.addEventListener('click', e => {
      this._select(entry.path, e.shiftKey ? 'range' : e.ctrlKey || e.metaKey ? 'toggle' : 'only');
      this._listing.focus({ preventScroll: true });
    });
    tr.addEventListener('mousedown', e => {
      if (e.detail <= 1) {
        this._pressed = entry.path;
      }
    });
    tr.addEventListener('dblclick', e => {
      e.preventDefault();
      // only a double click whose clicks both fell on this row (not one that began on
      // a row drawn before the listing changed under the pointer)
      if (this._pressed === entry.path) {
        void this._openEntry(entry);
      }
    });
    tr.addEventListener('contextmenu', e => {
      e.preventDefault();
      if (!this._selected.has(entry.path)) {
        this._select(entry.path, 'only');
      }
      this._openMenu(e.clientX, e.clientY);
    });
    return tr;
  }

  // -- selection, keyboard, context menu ------------------------------------------------------
  private _ordered(): IEntry[] {
    return this.model.sortedEntries();
  }

  private _select(path: string, how: 'only' | 'toggle' | 'range'): void {
    const order = this._ordered().map(e => e.path);
    if (how === 'range' && this._anchor !== null && order.includes(this._anchor)) {
      const [a, b] = [order.indexOf(this._anchor), order.indexOf(path)].sort((x, y) => x - y);
      this._selected = new Set(order.slice(a, b + 1));
    } else if (how === 'toggle') {
      if (!this._selected.delete(path)) {
        this._selected.add(path);
      }
      this._anchor = path;
    } else {
      this._selected = new Set([path]);
      this._anchor = path;
    }
    this._cursor = path;
    this._paintSelection();
  }

  private _paintSelection(): void {
    for (const tr of Array.from(this._listing.querySelectorAll<HTMLElement>('tr.jp-VolumePanel-entry'))) {
      const on = this._selected.has(tr.dataset.path ?? '');
      tr.classList.toggle('jp-mod-selected', on);
      tr.setAttribute('aria-selected', String(on));
      tr.classList.toggle('jp-mod-cursor', tr.dataset.path === this._cursor);
      if (tr.dataset.path === this._cursor) {
        tr.scrollIntoView({ block: 'nearest' });
      }
    }
  }

  private _selectedEntries(): IEntry[] {
    return this._ordered().filter(e => this._selected.has(e.path));
  }

  private _onKey(e: KeyboardEvent): void {
    // Keys on a control inside the listing (a sort button, a row's Download or "More
    // actions") are that control's: Enter on "Sort by size" sorts, it opens no entry.
    const target = e.target as HTMLElement;
    if (target !== this._listing && target.closest('button, a, input, select, textarea')) {
      return;
    }
    if (target !== this._listing && (e.key === 'ArrowDown' || e.key === 'ArrowUp')) {
      // a row given the focus (see PagedBox): the listing takes it back, and its cursor
      // (that row) moves (other keys keep the row's focus: Tab goes on from the row)
      this._listing.focus({ preventScroll: true });
    }
    const order = this._ordered();
    if (!order.length) {
      return;
    }
    const at = order.findIndex(x => x.path === this._cursor);
    const current = at >= 0 ? order[at] : null;
    if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
      e.preventDefault();
      const next = at < 0 ? 0 : Math.max(0, Math.min(order.length - 1, at + (e.key === 'ArrowDown' ? 1 : -1)));
      this._select(order[next].path, e.shiftKey ? 'range' : 'only');
    } else if (e.key === 'Enter' && current) {
      e.preventDefault();
      void this._openEntry(current);
    } else if (e.key === 'F2' && current) {
      e.preventDefault();
      void this._rename(current);
    } else if ((e.key === 'Delete' || e.key === 'Backspace') && this._selected.size) {
      e.preventDefault();
      void this._delete(this._selectedEntries());
    } else if (e.key === 'Escape') {
      this._selected.clear();
      this._paintSelection();
    } else if (e.key === 'a' && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      this._selected = new Set(order.map(x => x.path));
      this._paintSelection();
    }
  }

  private _openMenu(x: number, y: number): void {
    this._closeMenu();
    const entries = this._selectedEntries();
    if (!entries.length) {
      return;
    }
    const one = entries.length === 1 ? entries[0] : null;
    const readonly = this.model.at !== null;
    const menu = el('div', 'jp-VolumePanel-menu lm-Menu');
    menu.setAttribute('role', 'menu');
    const item = (label: string, run: () => void, enabled = true) => {
      const b = el('button', 'jp-VolumePanel-menuItem', label);
      b.type = 'button';
      b.setAttribute('role', 'menuitem');
      b.disabled = !enabled;
      b.addEventListener('click', () => {
        this._closeMenu();
        run();
      });
      menu.appendChild(b);
    };
    if (one) {
      item(one.type === 'directory' ? 'Open' : 'Open (read-only)', () => void this._openEntry(one));
    }
    const files = entries.filter(e => e.type === 'file');
    if (files.length) {
      item(files.length > 1 ? `Download ${files.length} files` : 'Download', () => void this._downloadAll(files));
    }
    if (one) {
      item('Rename', () => void this._rename(one), !readonly);
    }
    item(entries.length > 1 ? `Delete ${entries.length} items` : 'Delete', () => void this._delete(entries), !readonly);
    if (one) {
      item('Copy path', () => void navigator.clipboard?.writeText(one.path));
    }
    menu.addEventListener('keydown', e => {
      const items = Array.from(menu.querySelectorAll<HTMLButtonElement>('button:not(:disabled)'));
      const i = items.indexOf(document.activeElement as HTMLButtonElement);
      if (e.key === 'Escape') {
        this._closeMenu();
        this._listing.focus();
      } else if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
        e.preventDefault();
        items[(i + (e.key === 'ArrowDown' ? 1 : items.length - 1)) % items.length]?.focus();
      }
    });
    document.body.appendChild(menu);
    const r = menu.getBoundingClientRect();
    menu.style.left = `${Math.min(x, window.innerWidth - r.width - 4)}px`;
    menu.style.top = `${Math.min(y, window.innerHeight - r.height - 4)}px`;
    (menu.querySelector('button:not(:disabled)') as HTMLButtonElement | null)?.focus();
    this._menu = menu;
  }

  private _closeMenu(): void {
    this._menu?.remove();
    this._menu = null;
  }

  private async _cd(path: string): Promise<void> {
    this._selected.clear();
    this._cursor = null;
    await this.model.cd(path);
  }

  private async _downloadAll(files: IEntry[]): Promise<void> {
    for (const f of files) {
      await this._act(`Cannot download ${f.name}`, () => this.model.download(f));
    }
  }

  private async _openEntry(entry: IEntry): Promise<void> {
    if (entry.type === 'directory') {
      await this._act('Cannot open folder', () => this._cd(entry.path));
    } else if (entry.type === 'file') {
      await this._act(`Cannot open ${entry.name}`, () => this._host.openFile(entry));
    }
  }

  // -- transfers ------------------------------------------------------------------------------
  private _renderUploads(): void {
    const ups = this.model.uploads;
    this._uploads.hidden = ups.length === 0;
    // A row is kept (same DOM nodes) while its upload stays in the same state, and only
    // its bar and text change: progress events arrive many times a second, and a row
    // built anew each time would pull the Cancel button out from under the pointer.
    const keep = new Map<number, HTMLElement>();
    const rows = ups.map(u => {
      let row = this._uploadRows.get(u.key);
      if (!row || row.dataset.state !== u.state) {
        row = this._uploadRow(u);
      }
      this._fillUploadRow(row, u);
      keep.set(u.key, row);
      return row;
    });
    this._uploadRows = keep;
    if (!ups.length) {
      this._uploads.replaceChildren();
      return;
    }
    const head = el('div', 'jp-VolumePanel-uploadsHead');
    const waiting = ups.filter(u => u.state === 'queued').length;
    const running = ups.filter(u => !isFinished(u)).length;
    head.appendChild(
      el('span', 'jp-VolumePanel-uploadsTitle', running ? `Uploading: ${running} left` + (waiting ? ` (${waiting} waiting)` : '') : 'Uploads')
    );
    if (ups.some(isFinished)) {
      head.appendChild(button('Clear finished uploads', () => this.model.clearUploads(), { text: 'Clear' }));
    }
    const old = this._uploads.firstElementChild;
    if (old) {
      old.replaceWith(head);
    } else {
      this._uploads.appendChild(head);
    }
    // rows that are already in place stay attached; only what moved is re-inserted
    let at: Element = head;
    for (const row of rows) {
      if (at.nextElementSibling !== row) {
        at.after(row);
      }
      at = row;
    }
    while (at.nextElementSibling) {
      at.nextElementSibling.remove();
    }
  }

  /** The parts of an upload's row that do not depend on its state. */
  private _uploadRow(u: IUpload): HTMLElement {
    const row = el('div', `jp-VolumePanel-upload jp-mod-${u.state}`);
    row.dataset.path = u.path;
    row.dataset.volume = u.volume;
    row.dataset.state = u.state;
    const name = row.appendChild(el('span', 'jp-VolumePanel-uploadName', u.name));
    name.title = `${u.volume}:${u.path}`;
    const bar = el('progress', 'jp-VolumePanel-progress');
    bar.setAttribute('aria-label', `Progress of ${u.name}`);
    row.appendChild(bar);
    if (!isFinished(u) && u.state !== 'committing') {
      row.appendChild(button(`Cancel upload of ${u.name}`, () => this.model.cancelUpload(u.key), { icon: closeIcon }));
    } else {
      row.appendChild(el('span', 'jp-VolumePanel-uploadSpacer'));
    }
    const state = row.appendChild(el('span', 'jp-VolumePanel-uploadState'));
    if (u.state === 'error') {
      state.setAttribute('role', 'alert');
    }
    return row;
  }

  /** What changes while an upload runs: its bar and its line of text. */
  private _fillUploadRow(row: HTMLElement, u: IUpload): void {
    const bar = row.querySelector('progress') as HTMLProgressElement;
    bar.max = Math.max(u.total, 1);
    bar.value = u.total === 0 && u.state === 'done' ? 1 : u.loaded;
    const speed = u.speed ? ` · ${formatSize(Math.round(u.speed))}/s` : '';
    const where = u.volume !== this.model.volume ? ` into ${u.volume}` : '';
    const what = {
      queued: `waiting${where}`,
      uploading: `${formatSize(u.loaded)} of ${formatSize(u.total)}${speed}`,
      committing: 'verifying and saving…',
      done: `uploaded${where}`,
      error: `failed: ${u.error ?? ''}`,
      skipped: 'not replaced: the existing file was kept',
      cancelled: 'cancelled'
    }[u.state];
    const state = row.querySelector('.jp-VolumePanel-uploadState') as HTMLElement;
    if (state.textContent !== what) {
      state.textContent = what;
    }
  }

  // -- history --------------------------------------------------------------------------------
  /**
   * The model loaded the history again. Opening a volume and then its History tab loads
   * it twice: redrawing unchanged commits would close a "Changes" the user just opened
   * (and swallow a click on it), so the list is redrawn only when it changed.
   */
  private _onHistoryChanged(): void {
    const m = this.model;
    const key = JSON.stringify([
      m.kind,
      m.volume,
      m.historyMore,
      m.history.map(c => [c.seq, c.message, c.time, c.added, c.modified, c.deleted])
    ]);
    if (key === this._historyKey && this._history.childElementCount > 0) {
      return;
    }
    this._historyKey = key;
    this._renderHistory();
  }

  private _renderHistory(): void {
    const m = this.model;
    if (m.volume === null) {
      this._historyPages.redraw(null, false);
      return;
    }
    // Ticks belong to one volume's commits: another volume's #1 and #2 are other commits.
    const of = JSON.stringify([m.kind, m.volume]);
    if (of !== this._compareOf) {
      this._compareOf = of;
      this._compare = [];
    }
    const seqs = new Set(m.history.map(c => c.seq));
    this._compare = this._compare.filter(s => seqs.has(s));
    const content = document.createDocumentFragment();
    const compareBox = content.appendChild(el('div', 'jp-VolumePanel-compare'));
    compareBox.hidden = true;
    const hint = el(
      'div',
      'jp-VolumePanel-hint',
      'Tick two commits to compare them; "Changes" shows what one commit did.'
    );
    content.appendChild(hint);
    const list = el('ol', 'jp-VolumePanel-commits');
    m.history.forEach((c, i) => list.appendChild(this._commitRow(c, i === 0, compareBox)));
    if (m.history.length === 0) {
      list.appendChild(el('li', 'jp-VolumePanel-empty', 'No commits yet.'));
    }
    content.appendChild(list);
    this._historyPages.redraw(content, m.historyMore);
    void this._renderCompare(compareBox);
  }

  private _commitRow(c: ICommit, newest: boolean, compareBox: HTMLElement): HTMLElement {
    const li = el('li', 'jp-VolumePanel-commit');
    li.dataset.seq = String(c.seq);
    const head = li.appendChild(el('div', 'jp-VolumePanel-commitHead'));
    const pick = el('input', 'jp-VolumePanel-pick');
    pick.type = 'checkbox';
    pick.checked = this._compare.includes(c.seq);
    pick.setAttribute('aria-label', `Compare commit ${c.seq}`);
    pick.title = 'Tick two commits to compare them';
    pick.addEventListener('change', () => {
      this._compare = this._compare.filter(s => s !== c.seq);
      if (pick.checked) {
        this._compare.push(c.seq);
      }
      if (this._compare.length > 2) {
        this._compare = this._compare.slice(-2);
      }
      for (const box of Array.from(this._history.querySelectorAll<HTMLInputElement>('input.jp-VolumePanel-pick'))) {
        box.checked = this._compare.includes(Number(box.closest('li')?.dataset.seq));
      }
      void this._renderCompare(compareBox);
    });
    head.appendChild(pick);
    head.appendChild(el('span', 'jp-VolumePanel-seq', `#${c.seq}`));
    head.appendChild(el('span', 'jp-VolumePanel-message', c.message || c.kind));
    const meta = li.appendChild(el('div', 'jp-VolumePanel-commitMeta'));
    const time = meta.appendChild(el('time', 'jp-VolumePanel-time', relativeTime(new Date(c.time))));
    time.dateTime = c.time;
    time.title = new Date(c.time).toLocaleString();
    meta.appendChild(document.createTextNode(` · ${c.author}`));
    if (c.added || c.modified || c.deleted) {
      const counts = meta.appendChild(el('span', 'jp-VolumePanel-counts'));
      counts.dataset.added = String(c.added);
      counts.dataset.modified = String(c.modified);
      counts.dataset.deleted = String(c.deleted);
      counts.textContent = ` · +${c.added} ~${c.modified} −${c.deleted}`;
      counts.title = `${c.added} files added, ${c.modified} changed, ${c.deleted} deleted`;
    }
    const actions = li.appendChild(el('div', 'jp-VolumePanel-commitActions'));
    const diffBox = el('div', 'jp-VolumePanel-diff');
    diffBox.hidden = true;
    if (c.seq > 0) {
      actions.appendChild(
        button(`Show changes of commit ${c.seq}`, () => void this._toggleDiff(c, diffBox), { text: 'Changes' })
      );
    }
    actions.appendChild(
      button(`Browse files at commit ${c.seq}`, () => void this._browseAt(c.seq), { text: 'Browse' })
    );
    // Restoring the newest commit would change nothing: not offered.
    if (!newest) {
      actions.appendChild(
        button(`Restore commit ${c.seq}`, () => void this._restore(c), {
          text: 'Restore',
          cls: 'jp-VolumePanel-restore'
        })
      );
    }
    li.appendChild(diffBox);
    return li;
  }

  private async _browseAt(seq: number): Promise<void> {
    this._selected.clear();
    await this._act('Cannot browse that commit', () => this.model.browseAt(seq));
    this._showTab('files');
  }

  private async _renderCompare(box: HTMLElement): Promise<void> {
    box.replaceChildren();
    if (this._compare.length !== 2) {
      box.hidden = true;
      return;
    }
    const [a, b] = [...this._compare].sort((x, y) => x - y);
    box.hidden = false;
    box.dataset.a = String(a);
    box.dataset.b = String(b);
    const head = box.appendChild(el('div', 'jp-VolumePanel-compareHead'));
    head.appendChild(el('span', '', `Changes from commit #${a} to #${b}`));
    head.appendChild(
      button('Close the comparison', () => {
        this._compare = [];
        this._renderHistory();
      }, { icon: closeIcon })
    );
    await this._act('Cannot compare', async () => {
      const changes = countedChanges(await this.model.diff(a, b));
      if (!changes.length) {
        box.appendChild(el('div', 'jp-VolumePanel-empty', 'No differences.'));
      }
      for (const d of changes) {
        box.appendChild(this._diffRow(d, a, b, false));
      }
    });
  }

  private async _toggleDiff(c: ICommit, box: HTMLElement): Promise<void> {
    if (!box.hidden) {
      box.hidden = true;
      return;
    }
    await this._act('Cannot show changes', async () => {
      const changes = countedChanges(await this.model.diff(c.seq - 1, c.seq));
      box.replaceChildren();
      if (changes.length === 0) {
        box.appendChild(el('div', 'jp-VolumePanel-empty', 'No changes.'));
      }
      for (const d of changes) {
        box.appendChild(this._diffRow(d, c.seq - 1, c.seq, true));
      }
      box.hidden = false;
    });
  }

  /** One changed path between commits `a` and `b` (with `restorable`: b = a + 1). */
  private _diffRow(d: IDiffEntry, a: number, b: number, restorable: boolean): HTMLElement {
    const row = el('div', `jp-VolumePanel-change jp-mod-${d.change}`);
    row.dataset.path = d.path;
    row.dataset.type = d.type;
    const sign = { added: '+', modified: '~', deleted: '−' }[d.change];
    row.appendChild(el('span', 'jp-VolumePanel-changeSign', sign));
    const name = d.path + (d.type === 'directory' ? '/' : '');
    row.appendChild(el('span', 'jp-VolumePanel-changePath', name));
    const sizes = d.change === 'modified' ? `${formatSize(d.old_size)} → ${formatSize(d.new_size)}` : formatSize(d.new_size ?? d.old_size);
    row.appendChild(el('span', 'jp-VolumePanel-changeSize', sizes));
    if (d.type === 'file' && d.change === 'modified') {
      row.appendChild(
        button(`Show the diff of ${d.path}`, () => void this._act('Cannot show the diff', () => this._host.openDiff(d.path, a, b)), {
          text: 'Diff'
        })
      );
    }
    if (restorable && d.change !== 'added') {
      // The version before the commit: after it, a deleted path is simply gone.
      row.appendChild(
        button(`Restore ${d.path} as before commit ${b}`, () => void this._restorePath(d.path, a, b), {
          icon: historyIcon
        })
      );
    }
    return row;
  }

  // -- Dicts ------------------------------------------------------------------------------------
  private async _openDictView(name: string): Promise<void> {
    this._openDict = name;
    this._dictEntries = [];
    this._dictNext = null;
    this._renderVolumes();
    await this._loadDict(name);
  }

  private async _loadDict(name: string, more = false): Promise<void> {
    const load = ++this._dictLoad;
    const page = await this.model.dictEntries(name, more ? this._dictNext : null);
    if (load !== this._dictLoad || name !== this._openDict) {
      // Another Dict (or a volume) was opened meanwhile: drawn now, these entries would
      // sit under its name, and their Delete would act on it.
      return;
    }
    this._dictEntries = more ? this._dictEntries.concat(page.entries) : page.entries;
    this._dictNext = page.next;
    this._renderDict();
  }

  /** "Show more entries": the open Dict's next page. */
  private _moreDictEntries(): void {
    const name = this._openDict;
    if (name !== null) {
      void this._act('Cannot list the Dict', () => this._loadDict(name, true));
    }
  }

  private _renderDict(): void {
    const name = this._openDict;
    if (name === null) {
      this._dictPages.redraw(null, false);
      return;
    }
    const content = document.createDocumentFragment();
    const head = content.appendChild(el('div', 'jp-VolumePanel-dictHead'));
    head.appendChild(el('span', 'jp-VolumePanel-dictName', name));
    head.appendChild(el('span', 'jp-VolumePanel-kind jp-mod-dict', 'Dict'));
    head.appendChild(
      button(`Refresh Dict ${name}`, () => void this._act('Cannot list the Dict', () => this._loadDict(name)), {
        icon: refreshIcon
      })
    );
    head.appendChild(
      button(`Clear Dict ${name}`, () => void this._clearDict(name), { text: 'Clear', icon: deleteIcon })
    );
    const scroll = content.appendChild(el('div', 'jp-VolumePanel-dictScroll'));
    const table = scroll.appendChild(el('table', 'jp-VolumePanel-table jp-VolumePanel-dictTable'));
    const tr = table.appendChild(el('thead')).appendChild(el('tr'));
    for (const [label, cls] of [
      ['Key', 'jp-VolumePanel-dictKey'],
      ['Value', 'jp-VolumePanel-dictValue'],
      ['Type', 'jp-VolumePanel-dictType'],
      ['Size', 'jp-VolumePanel-size'],
      ['Updated', 'jp-VolumePanel-mtime'],
      ['', 'jp-VolumePanel-actionsCell']
    ]) {
      tr.appendChild(el('th', cls, label));
    }
    const body = table.appendChild(el('tbody'));
    if (!this._dictEntries.length) {
      const td = body.appendChild(el('tr')).appendChild(el('td', 'jp-VolumePanel-empty', 'This Dict is empty.'));
      td.colSpan = 6;
    }
    for (const e of this._dictEntries) {
      const row = body.appendChild(el('tr', 'jp-VolumePanel-dictEntry'));
      row.dataset.id = e.id;
      const cell = (cls: string, text: string) => {
        const td = row.appendChild(el('td', cls, text));
        td.title = text;
        return td;
      };
      cell('jp-VolumePanel-dictKey', e.key);
      const value = cell('jp-VolumePanel-dictValue', e.error ? `unreadable here: ${e.error}` : e.value);
      // a value the server cannot unpickle: say why, rather than a blank like ''
      value.classList.toggle('jp-mod-error', Boolean(e.error));
      cell('jp-VolumePanel-dictType', e.type);
      cell('jp-VolumePanel-size', formatSize(e.size));
      const when = e.updated === null ? null : new Date(typeof e.updated === 'number' ? e.updated * 1000 : e.updated);
      const t = cell('jp-VolumePanel-mtime', when ? relativeTime(when) : '');
      t.title = when ? when.toLocaleString() : '';
      const act = row.appendChild(el('td', 'jp-VolumePanel-actionsCell'));
      act.appendChild(button(`Delete entry ${e.key}`, () => void this._deleteDictEntry(name, e), { icon: deleteIcon }));
    }
    this._dictPages.redraw(content, Boolean(this._dictNext));
  }

  private async _deleteDictEntry(name: string, e: IDictEntry): Promise<void> {
    if (await confirm('Delete entry', `Delete the entry ${e.key} from Dict "${name}"?`, 'Delete')) {
      await this._act('Cannot delete the entry', async () => {
        await this.model.deleteDictEntry(name, e.id);
        await this._loadDict(name);
      });
    }
  }

  private async _clearDict(name: string): Promise<void> {
    if (await confirm('Clear Dict', `Delete every entry of Dict "${name}"? This cannot be undone.`, 'Clear')) {
      await this._act('Cannot clear the Dict', async () => {
        await this.model.clearDict(name);
        await this._loadDict(name);
      });
    }
  }

  // -- actions --------------------------------------------------------------------------------
  private async _newVolume(kind: Kind): Promise<void> {
    const r = await InputDialog.getText({
      title: kind === 'nfs' ? 'New network file system' : 'New volume',
      placeholder: 'letters, digits, . _ -',
      okLabel: 'Create'
    });
    if (r.button.accept && r.value) {
      this._openDict = null;
      await this._act(`Cannot create the ${KIND_NAME[kind]}`, () => this.model.createVolume(r.value!.trim(), kind));
    }
  }

  private async _renameVolume(name: string): Promise<void> {
    const r = await InputDialog.getText({ title: `Rename volume ${name}`, text: name, okLabel: 'Rename' });
    if (r.button.accept && r.value && r.value !== name) {
      await this._act('Cannot rename volume', () => this.model.renameVolume(name, r.value!.trim()));
    }
  }

  private async _deleteVolume(name: string, kind: Kind): Promise<void> {
    const what = KIND_NAME[kind];
    if (await confirm(`Delete ${what}`, `Delete ${what} "${name}" with all its files and its whole history? This cannot be undone.`, 'Delete')) {
      await this._act(`Cannot delete the ${what}`, () => this.model.deleteVolume(name, kind));
    }
  }

  private async _newFolder(): Promise<void> {
    const r = await InputDialog.getText({ title: 'New folder', placeholder: 'folder name', okLabel: 'Create' });
    if (r.button.accept && r.value) {
      await this._act('Cannot create folder', () => this.model.newFolder(r.value!.trim()));
    }
  }

  private async _rename(entry: IEntry): Promise<void> {
    if (this.model.at !== null) {
      return;
    }
    const r = await InputDialog.getText({ title: `Rename ${entry.name}`, text: entry.name, okLabel: 'Rename' });
    if (!r.button.accept || !r.value || r.value === entry.name) {
      return;
    }
    const bad = badName(r.value);
    if (bad) {
      await showErrorMessage('Invalid name', bad);
      return;
    }
    await this._act('Cannot rename', () => this.model.rename(entry, r.value!.trim()));
  }

  private async _delete(entries: IEntry[]): Promise<void> {
    if (this.model.at !== null || !entries.length) {
      return;
    }
    let text: string;
    if (entries.length === 1) {
      const entry = entries[0];
      const what = entry.type === 'directory' ? 'the folder' : 'the file';
      const extra = entry.type === 'directory' ? ' and everything in it' : '';
      text = `Delete ${what} "${entry.path}"${extra}? Earlier versions stay in the history.`;
    } else {
      text = `Delete these ${entries.length} items (${entries.map(e => e.name).join(', ')})? Earlier versions stay in the history.`;
    }
    if (await confirm('Delete', text, 'Delete')) {
      // several at once: one commit, all or none (one commit each left a half-done
      // delete behind when one failed, and a refresh after each)
      await this._act('Cannot delete', () =>
        entries.length === 1 ? this.model.remove(entries[0]) : this.model.removeMany(entries)
      );
      this._selected.clear();
    }
  }

  private async _upload(files: File[]): Promise<void> {
    if (!files.length || this.model.volume === null) {
      return;
    }
    if (this.model.at !== null) {
      await showErrorMessage('Read-only', 'You are looking at an old commit: go back to the latest files to upload.');
      return;
    }
    // Failures are shown in the transfers list, next to the file, not in a dialog.
    await this.model.upload(files, (path, volume) =>
      confirm(
        'File exists',
        `"${path}" already exists in volume ${volume}. Replace it? The old version stays in the history.`,
        'Replace'
      )
    );
  }

  private async _restore(c: ICommit): Promise<void> {
    const name = this.model.volume;
    const ok = await confirm(
      'Restore the whole volume',
      `Every file of volume ${name} goes back to how it was at commit #${c.seq}: files added since are removed ` +
        'and every change since is undone, for everyone using this volume. This is recorded as a new commit, ' +
        'so the history keeps everything and you can restore the newest commit again.',
      'Restore volume'
    );
    if (ok) {
      await this._act('Cannot restore', () => this.model.restore(c.seq));
    }
  }

  private async _restorePath(path: string, before: number, commit: number): Promise<void> {
    const ok = await confirm(
      'Restore',
      `Bring back "${path}" as it was before commit #${commit} (at commit #${before})? This is recorded as a new commit; nothing in the history is lost.`,
      'Restore'
    );
    if (ok) {
      await this._act('Cannot restore', () => this.model.restore(before, path));
    }
  }
}
