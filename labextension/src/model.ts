/**
 * The sidebar's state and every action it can take, with signals for the views.
 *
 * Views only render this model and call its methods; all REST calls go through
 * `requestAPI()`. Methods throw `ApiError` (the server's message) for the view to show.
 */
import { ServerConnection } from '@jupyterlab/services';
import { ISignal, Signal } from '@lumino/signaling';

import { API_VERSION, ApiError, apiUrl, encodePath, requestAPI, sendJSON } from './handler';
import { Sha256, sha256Hex } from './sha256';

/** What the panel lists: volumes, network file systems (same routes under nfs/), Dicts. */
export type Kind = 'volume' | 'nfs' | 'dict';

export interface IVolume {
  name: string;
  id: string;
  created_at: string;
  created_by: string;
  /** Set by the panel's model: 'volume' or 'nfs'. */
  kind: Kind;
}

/** The route prefix of a kind's items. */
export function kindRoute(kind: Kind): string {
  return kind === 'nfs' ? 'nfs' : kind === 'dict' ? 'dicts' : 'volumes';
}

export interface IEntry {
  name: string;
  path: string;
  type: 'file' | 'directory' | 'symlink' | 'unknown';
  size: number;
  mtime: number;
}

export interface IFolderPage {
  path: string;
  at: number | null;
  /** The commit the page was listed at (older servers do not send it). */
  seq?: number;
  offset: number;
  limit: number;
  total: number;
  entries: IEntry[];
}

/** The most commits the server sends in one answer (its MAX_PAGE). */
const MAX_HISTORY_PAGE = 5000;

export interface ICommit {
  seq: number;
  time: string;
  author: string;
  host: string;
  message: string;
  kind: string;
  added: number;
  modified: number;
  deleted: number;
  bytes_new: number;
}

export interface IDiffEntry {
  path: string;
  change: 'added' | 'modified' | 'deleted';
  type: IEntry['type'];
  old_size: number | null;
  new_size: number | null;
}

export interface IVersion {
  name: string;
  version: string;
  api_version: number;
  store: string | null;
  store_error?: string;
}

interface IUploadSession {
  upload_id: string;
  received: number;
  chunk_size: number;
}

/**
 * `queued` until its turn; `skipped`: the user chose not to replace an existing file;
 * `cancelled`: the user stopped it. Only `error` is a failure.
 */
export type UploadState =
  | 'queued'
  | 'uploading'
  | 'committing'
  | 'done'
  | 'error'
  | 'skipped'
  | 'cancelled';

export interface IUpload {
  readonly key: number;
  readonly name: string;
  /** The volume (or network file system) it goes into, fixed when it was started. */
  readonly volume: string;
  readonly kind: Kind;
  readonly path: string;
  readonly total: number;
  loaded: number;
  state: UploadState;
  error?: string;
  /** Bytes per second, averaged since the upload started sending. */
  speed?: number;
}

/** A Dict of the store, as the panel lists it beside the volumes. */
export interface IDictInfo {
  name: string;
  id: string;
  created_at: string;
  created_by: string;
}

export interface IDictEntry {
  id: string;
  key: string;
  value: string;
  type: string;
  size: number;
  updated: string | number | null;
  /** Why the server could not read the value (then `value` is ""), e.g. its module is missing. */
  error?: string | null;
}

export type SortKey = 'name' | 'size' | 'mtime';

/** Finished uploads: nothing more will happen to them. */
export function isFinished(u: IUpload): boolean {
  return !['queued', 'uploading', 'committing'].includes(u.state);
}

/**
 * Why `name` cannot name a file or folder (null if it can): as JupyterLab's file
 * browser, a name is one path segment, so "/" and "." / ".." are refused, never
 * turned into a move.
 */
export function badName(name: string): string | null {
  if (!name.trim()) {
    return 'A name cannot be empty.';
  }
  if (name.includes('/')) {
    return `"${name}" contains "/": a name cannot contain "/" (renaming never moves a file into another folder).`;
  }
  if (name === '.' || name === '..') {
    return `"${name}" is not a valid name.`;
  }
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f-\u009f]/.test(name)) {
    return 'A name cannot contain control characters (such as line breaks or tabs).';
  }
  return null;
}

/** The error of a response that is not ok: the server's JSON message, else its status line. */
async function httpError(response: Response): Promise<ApiError> {
  let message = `${response.status} ${response.statusText}`;
  try {
    message = (await response.json()).message ?? message;
  } catch {
    // not JSON: keep the status line
  }
  return new ApiError(response.status, 'HTTP' + response.status, message);
}

/** Raised inside an upload when the user chose not to replace an existing file. */
class NotReplaced extends Error {}

/**
 * `checking` until the version endpoint answered; `missing`: the server extension is
 * not enabled (404); `incompatible`: another API version; `unreachable`: anything else.
 */
export type ServerStatus = 'checking' | 'ok' | 'missing' | 'incompatible' | 'unreachable';

export const PAGE_SIZE = 500;
const CHUNK_RETRIES = 3;

/** Join volume path segments ("" is the root). */
export function joinPath(...parts: string[]): string {
  return parts
    .join('/')
    .split('/')
    .filter(p => p !== '')
    .join('/');
}

export class VolumeModel {
  // -- state ---------------------------------------------------------------------------
  status: ServerStatus = 'checking';
  statusMessage = '';
  server: IVersion | null = null;
  volumes: IVolume[] = [];
  /** The open volume (or network file system), or null. */
  volume: string | null = null;
  /** What `volume` names. */
  kind: Kind = 'volume';
  /** The folder shown, relative to the volume root ("" is the root). */
  path = '';
  entries: IEntry[] = [];
  total = 0;
  history: ICommit[] = [];
  historyMore = false;
  uploads: IUpload[] = [];
  /** The commit whose tree is browsed (read-only), or null for the newest. */
  at: number | null = null;
  /** True while a folder is being listed. */
  loading = false;
  sortKey: SortKey = 'name';
  sortAscending = true;
  dicts: IDictInfo[] = [];

  private _statusChanged = new Signal<this, ServerStatus>(this);
  private _volumesChanged = new Signal<this, void>(this);
  private _folderChanged = new Signal<this, void>(this);
  private _historyChanged = new Signal<this, void>(this);
  private _uploadsChanged = new Signal<this, void>(this);
  private _uploadKey = 0;
  private _historyLimit = 100;
  private _aborts = new Map<number, AbortController>();
  private _loadingChanged = new Signal<this, boolean>(this);
  /** Counts folder listings, so the answer of a superseded one is dropped. */
  private _listing = 0;
  /** The next page being loaded, if any. */
  private _more: Promise<void> | null = null;
  /**
   * The commit the first page was listed at: later pages are listed there too, so a
   * file another writer deletes or adds meanwhile shifts no entry across a page break.
   */
  private _listedAt: number | null = null;
  /** Counts history loads, so the answer of a superseded one (another volume's) is dropped. */
  private _historyLoad = 0;

  get loadingChanged(): ISignal<this, boolean> {
    return this._loadingChanged;
  }

  get statusChanged(): ISignal<this, ServerStatus> {
    return this._statusChanged;
  }
  get volumesChanged(): ISignal<this, void> {
    return this._volumesChanged;
  }
  get folderChanged(): ISignal<this, void> {
    return this._folderChanged;
  }
  get historyChanged(): ISignal<this, void> {
    return this._historyChanged;
  }
  get uploadsChanged(): ISignal<this, void> {
    return this._uploadsChanged;
  }

  private _vol(route = ''): string {
    if (this.volume === null) {
      throw new ApiError(400, 'NoVolume', 'open a volume first');
    }
    return `${kindRoute(this.kind)}/${encodeURIComponent(this.volume)}${route}`;
  }

  // -- server ----------------------------------------------------------------------------
  /** Ask the server extension for its version; sets `status`. */
  async checkServer(): Promise<ServerStatus> {
    try {
      const v = await requestAPI<IVersion>('version');
      this.server = v;
      if (v.api_version !== API_VERSION) {
        this.status = 'incompatible';
        this.statusMessage =
          `The server extension speaks API version ${v.api_version} (jupyter-volume ` +
          `${v.version}); this sidebar needs version ${API_VERSION}. Install matching ` +
          'versions: pip install --upgrade jupyter-volume, then restart JupyterLab.';
      } else if (v.store_error) {
        this.status = 'ok';
        this.statusMessage = `The volume store cannot be opened: ${v.store_error}`;
      } else {
        this.status = 'ok';
        this.statusMessage = '';
      }
    } catch (e) {
      const err = e as ApiError;
      if (err.status === 404) {
        this.status = 'missing';
        this.statusMessage =
          'The jupyter-volume server extension is not enabled, so volumes cannot be ' +
          'shown. Enable it with `jupyter server extension enable jupyter_volume.server`, ' +
          'check with `jupyter server extension list`, then restart JupyterLab.';
      } else {
        this.status = 'unreachable';
        this.statusMessage = `The jupyter-volume server extension did not answer: ${err.message}`;
      }
    }
    this._statusChanged.emit(this.status);
    return this.status;
  }

  // -- volumes ---------------------------------------------------------------------------
  async refreshVolumes(): Promise<void> {
    const [{ volumes }, nfs, dicts] = await Promise.all([
      requestAPI<{ volumes: IVolume[] }>('volumes'),
      // network file systems and Dicts are listed when the server has their routes
      requestAPI<{ nfs: IVolume[] }>('nfs').then(
        r => r.nfs,
        () => [] as IVolume[]
      ),
      requestAPI<{ dicts: IDictInfo[] }>('dicts').then(
        r => r.dicts,
        () => [] as IDictInfo[]
      )
    ]);
    this.volumes = [
      ...volumes.map(v => ({ ...v, kind: 'volume' as Kind })),
      ...nfs.map(v => ({ ...v, kind: 'nfs' as Kind }))
    ];
    this.dicts = [...dicts].sort((a, b) => a.name.localeCompare(b.name));
    this._volumesChanged.emit();
    if (
      this.volume !== null &&
      !this.volumes.some(v => v.name === this.volume && v.kind === this.kind)
    ) {
      this._close();
    }
  }

  async createVolume(name: string, kind: Kind = 'volume'): Promise<void> {
    await sendJSON(kindRoute(kind), 'POST', { name });
    await this.refreshVolumes();
    await this.open(name, kind);
  }

  async renameVolume(name: string, newName: string): Promise<void> {
    await sendJSON(`volumes/${encodeURIComponent(name)}`, 'PATCH', { name: newName });
    if (this.volume === name) {
      this.volume = newName;
      // the breadcrumb and the history name the volume: show the new name at once
      this._folderChanged.emit();
      this._historyChanged.emit();
    }
    await this.refreshVolumes();
  }

  async deleteVolume(name: string, kind: Kind = 'volume'): Promise<void> {
    await requestAPI(`${kindRoute(kind)}/${encodeURIComponent(name)}`, { method: 'DELETE' });
    if (this.volume === name && this.kind === kind) {
      this._close();
    }
    await this.refreshVolumes();
  }

  private _close(): void {
    this._listing++; // a page still loading belongs to no folder now
    this._historyLoad++; // and a history still loading to no volume
    this.volume = null;
    this.at = null;
    this.path = '';
    this.entries = [];
    this.total = 0;
    this.history = [];
    this._folderChanged.emit();
    this._historyChanged.emit();
  }

  /** Open a volume at its root. */
  async open(name: string, kind: Kind = 'volume'): Promise<void> {
    this.volume = name;
    this.kind = kind;
    this.at = null;
    this._historyLimit = 100;
    this.path = '';
    this.entries = [];
    this.total = 0;
    this.history = [];
    this._volumesChanged.emit();
    await Promise.all([this.refreshFolder(), this.loadHistory()]);
  }

  // -- folders ---------------------------------------------------------------------------
  /** Show folder `path` of the open volume. */
  async cd(path: string): Promise<void> {
    const old = this.path;
    this.path = joinPath(path);
    try {
      await this.refreshFolder();
    } catch (e) {
      this.path = old;
      throw e;
    }
  }

  /** Reload the first page of the current folder. */
  async refreshFolder(): Promise<void> {
    if (this.volume === null) {
      return;
    }
    // A newer listing (another folder, commit or sort) makes this one's answer stale.
    const listing = ++this._listing;
    this._more = null;
    this._setLoading(true);
    try {
      const page = await this._page(0, this.at);
      if (listing !== this._listing) {
        return;
      }
      this.entries = page.entries;
      this.total = page.total;
      this._listedAt = page.seq ?? this.at;
    } finally {
      if (listing === this._listing) {
        this._setLoading(false);
      }
    }
    this._folderChanged.emit();
  }

  private _setLoading(on: boolean): void {
    this.loading = on;
    this._loadingChanged.emit(on);
  }

  /** Browse the tree as it was at commit `seq` (read-only), or the newest with null. */
  async browseAt(seq: number | null): Promise<void> {
    const old = [this.at, this.path] as const;
    this.at = seq;
    try {
      await this.refreshFolder();
    } catch (e) {
      // the folder may not exist at that commit: show its root instead
      this.path = '';
      try {
        await this.refreshFolder();
      } catch {
        [this.at, this.path] = old;
        throw e;
      }
    }
  }

  /**
   * Sort the listing by `key` (a second call on the same key reverses it). The server
   * sorts the whole folder (a folder is loaded in pages, so sorting the loaded ones
   * would be wrong), so the listing is loaded again from its first page.
   */
  async sortBy(key: SortKey, ascending?: boolean): Promise<void> {
    const old = [this.sortKey, this.sortAscending] as const;
    this.sortAscending = ascending ?? (key === this.sortKey ? !this.sortAscending : true);
    this.sortKey = key;
    if (this.volume === null) {
      this._folderChanged.emit();
      return;
    }
    try {
      await this.refreshFolder();
    } catch (e) {
      [this.sortKey, this.sortAscending] = old;
      this._folderChanged.emit();
      throw e;
    }
  }

  /**
   * The loaded entries in the chosen order, folders first (as JupyterLab): the
   * server's order, since it sorted the whole folder before paging it.
   */
  sortedEntries(): IEntry[] {
    return [...this.entries];
  }

  /** Append the next page of a large folder (one request at a time). */
  loadMore(): Promise<void> {
    if (!this._more) {
      const listing = this._listing;
      const more = this._loadMore(listing).finally(() => {
        if (this._more === more) {
          this._more = null;
        }
      });
      this._more = more;
    }
    return this._more;
  }

  private async _loadMore(listing: number): Promise<void> {
    const page = await this._page(this.entries.length, this._listedAt);
    if (listing !== this._listing) {
      return; // the folder or the sort changed meanwhile: that page belongs to no one
    }
    // The folder may have changed between pages: never show an entry twice.
    const known = new Set(this.entries.map(e => e.path));
    this.entries = this.entries.concat(page.entries.filter(e => !known.has(e.path)));
    this.total = page.total;
    this._folderChanged.emit();
  }

  private _page(offset: number, commit: number | null): Promise<IFolderPage> {
    const path = encodePath(this.path);
    const at = commit === null ? '' : `&at=${commit}`;
    const sort = `&sort=${this.sortKey}&order=${this.sortAscending ? 'asc' : 'desc'}`;
    return requestAPI<IFolderPage>(
      this._vol(`/tree${path ? '/' + path : ''}?offset=${offset}&limit=${PAGE_SIZE}${sort}${at}`)
    );
  }

  async newFolder(name: string): Promise<void> {
    const bad = badName(name);
    if (bad) {
      throw new ApiError(400, 'InvalidError', bad);
    }
    await sendJSON(this._vol('/folders'), 'POST', { path: joinPath(this.path, name) });
    await this._changed();
  }

  /** Rename `entry` within its folder. */
  async rename(entry: IEntry, newName: string): Promise<void> {
    const bad = badName(newName);
    if (bad) {
      throw new ApiError(400, 'InvalidError', bad);
    }
    const parent = entry.path.split('/').slice(0, -1).join('/');
    await sendJSON(this._vol('/move'), 'POST', {
      src: entry.path,
      dst: joinPath(parent, newName)
    });
    await this._changed();
  }

  async remove(entry: IEntry): Promise<void> {
    const recursive = entry.type === 'directory' ? '?recursive=true' : '';
    await requestAPI(this._vol(`/files/${encodePath(entry.path)}${recursive}`), {
      method: 'DELETE'
    });
    await this._changed();
  }

  /** Delete several entries (folders with everything in them) as one commit: all or none. */
  async removeMany(entries: IEntry[]): Promise<void> {
    await sendJSON(this._vol('/remove'), 'POST', { paths: entries.map(e => e.path) });
    await this._changed();
  }

  /** The URL that downloads a file (cookie-authenticated, streamed by the server). */
  downloadUrl(entry: { path: string }, at: number | null = this.at): string {
    const q = at === null ? '' : `?at=${at}`;
    return apiUrl(this._vol(`/files/${encodePath(entry.path)}${q}`));
  }

  /** A file's bytes (at commit `at`, default the browsed one) as a Blob. */
  async readBlob(path: string, at: number | null = this.at): Promise<Blob> {
    const url = this.downloadUrl({ path }, at);
    const settings = ServerConnection.makeSettings();
    const response = await ServerConnection.makeRequest(url, {}, settings);
    if (!response.ok) {
      throw await httpError(response);
    }
    return response.blob();
  }

  /**
   * Let the browser download `entry` (no copy of the file in page memory). The file is
   * checked first: the browser reports a failed download only in its own list, so a
   * file another writer removed since the listing would fail with no word here. The
   * download then asks for the commit the check answered from, so a writer committing
   * in between can neither make it fail nor hand over other bytes than those checked.
   */
  async download(entry: IEntry): Promise<void> {
    const url = this.downloadUrl(entry);
    const settings = ServerConnection.makeSettings();
    const head = await ServerConnection.makeRequest(url, { method: 'HEAD' }, settings);
    if (!head.ok) {
      // a HEAD answer has no body: ask again for the server's message
      const response = await ServerConnection.makeRequest(url, {}, settings);
      if (!response.ok) {
        throw await httpError(response);
      }
      void response.body?.cancel();
    }
    const seq = Number(head.headers.get('X-Volume-Commit') ?? NaN);
    const a = document.createElement('a');
    a.href = Number.isInteger(seq) && seq >= 0 ? this.downloadUrl(entry, seq) : url;
    a.download = entry.name;
    a.style.display = 'none';
    document.body.appendChild(a);
    a.click();
    a.remove();
  }

  private async _changed(): Promise<void> {
    await Promise.all([this.refreshFolder(), this.loadHistory()]);
  }

  // -- uploads ---------------------------------------------------------------------------
  /**
   * Upload files into the current folder of the open volume, one at a time, in
   * checksummed chunks. Each upload stays bound to the volume and folder it started
   * in, even if the user opens another one meanwhile. Waiting files are listed as
   * `queued`; each can be cancelled with `cancelUpload`.
   *
   * @param confirmOverwrite - asked when a file exists; true uploads over it, false
   *   skips the file (not a failure)
   * @returns the uploads that failed (each also has `state: "error"` and `error`)
   */
  async upload(
    files: File[],
    confirmOverwrite: (path: string, volume: string) => Promise<boolean>
  ): Promise<IUpload[]> {
    if (this.volume === null || this.at !== null) {
      throw new ApiError(400, 'InvalidError', 'open a volume at its newest commit first');
    }
    const volume = this.volume;
    const kind = this.kind;
    const folder = this.path;
    const items = files.map(file => {
      const u: IUpload = {
        key: ++this._uploadKey,
        name: file.name,
        volume,
        kind,
        path: joinPath(folder, file.name),
        total: file.size,
        loaded: 0,
        state: 'queued'
      };
      return { file, u };
    });
    this.uploads = this.uploads.filter(u => !isFinished(u)).concat(items.map(i => i.u));
    this._uploadsChanged.emit();
    const failed: IUpload[] = [];
    for (const { file, u } of items) {
      if (u.state !== 'queued') {
        continue; // cancelled while it waited
      }
      const abort = new AbortController();
      this._aborts.set(u.key, abort);
      u.state = 'uploading';
      this._uploadsChanged.emit();
      try {
        await this._uploadOne(file, u, confirmOverwrite, abort.signal);
        u.state = 'done';
      } catch (e) {
        if (e instanceof NotReplaced) {
          u.state = 'skipped';
        } else if (abort.signal.aborted) {
          u.state = 'cancelled';
        } else {
          u.state = 'error';
          u.error = (e as Error).message;
          failed.push(u);
        }
      } finally {
        this._aborts.delete(u.key);
      }
      this._uploadsChanged.emit();
      if (u.state === 'done' && this._showing(volume, kind) && this.at === null) {
        await this.refreshFolder().catch(() => undefined);
      }
    }
    if (this._showing(volume, kind)) {
      await this._changed().catch(() => undefined);
    }
    return failed;
  }

  private _showing(volume: string, kind: Kind): boolean {
    return this.volume === volume && this.kind === kind;
  }

  /** Stop a queued or running upload; what was sent is discarded on the server. */
  cancelUpload(key: number): void {
    const u = this.uploads.find(x => x.key === key);
    if (!u || isFinished(u) || u.state === 'committing') {
      return;
    }
    if (u.state === 'queued') {
      u.state = 'cancelled';
      this._uploadsChanged.emit();
    }
    this._aborts.get(key)?.abort();
  }

  /** Forget finished, skipped, cancelled and failed uploads. */
  clearUploads(): void {
    this.uploads = this.uploads.filter(u => !isFinished(u));
    this._uploadsChanged.emit();
  }

  private async _uploadOne(
    file: File,
    u: IUpload,
    confirmOverwrite: (path: string, volume: string) => Promise<boolean>,
    signal: AbortSignal
  ): Promise<void> {
    const base = `${kindRoute(u.kind)}/${encodeURIComponent(u.volume)}/uploads`;
    const start = (force: boolean) =>
      requestAPI<IUploadSession>(base, {
        method: 'POST',
        body: JSON.stringify({ path: u.path, size: file.size, force }),
        headers: { 'Content-Type': 'application/json' },
        signal
      });
    let session: IUploadSession;
    try {
      session = await start(false);
    } catch (e) {
      const err = e as ApiError;
      if (err.error !== 'AlreadyExistsError' || signal.aborted) {
        throw e;
      }
      const there = this._showing(u.volume, u.kind)
        ? this.entries.find(x => x.path === u.path)
        : undefined;
      if (there && there.type === 'directory') {
        // a folder is never replaced by a file: asking "Replace?" would only mislead
        throw e;
      }
      if (!(await confirmOverwrite(u.path, u.volume))) {
        throw new NotReplaced(u.path);
      }
      session = await start(true);
    }
    const route = `${base}/${session.upload_id}`;
    try {
      const whole = new Sha256();
      const step = session.chunk_size;
      const began = performance.now();
      for (let offset = 0; offset < file.size; offset += step) {
        const data = new Uint8Array(await file.slice(offset, offset + step).arrayBuffer());
        whole.update(data);
        await this._putChunk(route, offset, data, signal);
        u.loaded = offset + data.length;
        const seconds = (performance.now() - began) / 1000;
        u.speed = seconds > 0 ? u.loaded / seconds : undefined;
        this._uploadsChanged.emit();
      }
      if (signal.aborted) {
        throw new ApiError(0, 'AbortError', 'cancelled');
      }
      u.state = 'committing';
      this._uploadsChanged.emit();
      const digest = whole.hexdigest();
      const finish = (force?: boolean) =>
        sendJSON(`${route}/finish`, 'POST', { size: file.size, sha256: digest, force });
      try {
        await finish();
      } catch (e) {
        // Another writer created the path while the bytes were sent: the server keeps
        // the session for a retry, so ask as at the start instead of losing the transfer.
        if ((e as ApiError).error !== 'AlreadyExistsError' || signal.aborted) {
          throw e;
        }
        if (!(await confirmOverwrite(u.path, u.volume))) {
          throw new NotReplaced(u.path);
        }
        await finish(true);
      }
      u.loaded = file.size;
    } catch (e) {
      requestAPI(route, { method: 'DELETE' }).catch(() => undefined);
      throw e;
    }
  }

  private async _putChunk(
    route: string,
    offset: number,
    data: Uint8Array,
    signal: AbortSignal
  ): Promise<void> {
    const digest = sha256Hex(data);
    for (let attempt = 1; ; attempt++) {
      try {
        await requestAPI(`${route}?offset=${offset}`, {
          method: 'PUT',
          body: new Blob([data as Uint8Array<ArrayBuffer>]),
          headers: { 'Content-Type': 'application/octet-stream', 'X-Content-SHA256': digest },
          signal
        });
        return;
      } catch (e) {
        const err = e as ApiError;
        if (signal.aborted) {
          throw e;
        }
        // A dropped connection or a chunk damaged in transit is worth another try.
        const retry = err.status === 0 || err.status >= 500 || err.error === 'InvalidError';
        if (!retry || attempt >= CHUNK_RETRIES) {
          throw e;
        }
        const status = await requestAPI<IUploadSession>(route).catch(() => null);
        if (status && status.received === offset + data.length) {
          return; // it had landed; only the answer was lost
        }
      }
    }
  }

  // -- history ---------------------------------------------------------------------------
  async loadHistory(limit = this._historyLimit): Promise<void> {
    if (this.volume === null) {
      return;
    }
    this._historyLimit = limit;
    // A newer load (another volume opened meanwhile) makes this one's answer stale: its
    // commits drawn under the open volume would restore, browse and compare that one.
    const load = ++this._historyLoad;
    const page = await requestAPI<{ commits: ICommit[]; more: boolean }>(
      this._vol(`/history?limit=${Math.min(limit, MAX_HISTORY_PAGE)}`)
    );
    if (load !== this._historyLoad) {
      return;
    }
    this.history = page.commits;
    this.historyMore = page.more;
    this._historyChanged.emit();
  }

  /**
   * Show 100 more (older) commits: the page older than the oldest one shown, appended
   * (asking again for every commit shown made each page cost all the pages before it).
   */
  async loadMoreHistory(): Promise<void> {
    const shown = this.history;
    if (this.volume === null || shown.length === 0) {
      return this.loadHistory(this._historyLimit + 100);
    }
    const load = this._historyLoad;
    const before = shown[shown.length - 1].seq;
    const page = await requestAPI<{ commits: ICommit[]; more: boolean }>(
      this._vol(`/history?limit=100&before=${before}`)
    );
    // Another load since (another volume, a refresh) or a page appended meanwhile (a
    // second click): this page would land on a list it does not continue.
    if (load !== this._historyLoad || this.history !== shown) {
      return;
    }
    this.history = [...shown, ...page.commits];
    this._historyLimit = this.history.length; // a refresh shows as many again
    this.historyMore = page.more;
    this._historyChanged.emit();
  }

  /** What changed from commit `a` to `b` (default: the newest). */
  async diff(a: number, b?: number): Promise<IDiffEntry[]> {
    const q = b === undefined ? `a=${a}` : `a=${a}&b=${b}`;
    const res = await requestAPI<{ changes: IDiffEntry[] }>(this._vol(`/diff?${q}`));
    return res.changes;
  }

  // -- dicts --------------------------------------------------------------------------------
  /** One page of a Dict's entries (pass the previous page's `next` as `after`). */
  dictEntries(
    name: string,
    after: string | null = null,
    limit = 100
  ): Promise<{ entries: IDictEntry[]; next: string | null }> {
    const q = `limit=${limit}` + (after ? `&after=${encodeURIComponent(after)}` : '');
    return requestAPI(`dicts/${encodeURIComponent(name)}/entries?${q}`);
  }

  async deleteDictEntry(name: string, id: string): Promise<void> {
    await requestAPI(`dicts/${encodeURIComponent(name)}/entries/${encodeURIComponent(id)}`, {
      method: 'DELETE'
    });
  }

  async clearDict(name: string): Promise<void> {
    await requestAPI(`dicts/${encodeURIComponent(name)}/entries`, { method: 'DELETE' });
  }

  /** Bring back the whole volume (or one path) as of `seq`, as a new commit. */
  async restore(seq: number, path?: string): Promise<ICommit | null> {
    const res = await sendJSON<{ commit: ICommit | null }>(this._vol('/restore'), 'POST', {
      commit: seq,
      path: path ?? null
    });
    await this._changed();
    return res.commit;
  }
}
