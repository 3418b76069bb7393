/**
 * The sidebar's state and every action it can take, with signals for the views.
 *
 * Views only render this model and call its methods; all REST calls go through
 * `requestAPI()`. Methods throw `ApiError` (the server's message) for the view to show.
 */
import { ISignal, Signal } from '@lumino/signaling';

import { API_VERSION, ApiError, apiUrl, encodePath, requestAPI, sendJSON } from './handler';
import { Sha256, sha256Hex } from './sha256';

export interface IVolume {
  name: string;
  id: string;
  created_at: string;
  created_by: string;
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
  offset: number;
  limit: number;
  total: number;
  entries: IEntry[];
}

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

export type UploadState = 'uploading' | 'committing' | 'done' | 'error';

export interface IUpload {
  readonly key: number;
  readonly name: string;
  readonly path: string;
  readonly total: number;
  loaded: number;
  state: UploadState;
  error?: string;
}

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
  /** The open volume, or null. */
  volume: string | null = null;
  /** The folder shown, relative to the volume root ("" is the root). */
  path = '';
  entries: IEntry[] = [];
  total = 0;
  history: ICommit[] = [];
  historyMore = false;
  uploads: IUpload[] = [];

  private _statusChanged = new Signal<this, ServerStatus>(this);
  private _volumesChanged = new Signal<this, void>(this);
  private _folderChanged = new Signal<this, void>(this);
  private _historyChanged = new Signal<this, void>(this);
  private _uploadsChanged = new Signal<this, void>(this);
  private _uploadKey = 0;

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
    return `volumes/${encodeURIComponent(this.volume)}${route}`;
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
    const { volumes } = await requestAPI<{ volumes: IVolume[] }>('volumes');
    this.volumes = volumes;
    this._volumesChanged.emit();
    if (this.volume !== null && !volumes.some(v => v.name === this.volume)) {
      this._close();
    }
  }

  async createVolume(name: string): Promise<void> {
    await sendJSON('volumes', 'POST', { name });
    await this.refreshVolumes();
    await this.open(name);
  }

  async renameVolume(name: string, newName: string): Promise<void> {
    await sendJSON(`volumes/${encodeURIComponent(name)}`, 'PATCH', { name: newName });
    if (this.volume === name) {
      this.volume = newName;
    }
    await this.refreshVolumes();
  }

  async deleteVolume(name: string): Promise<void> {
    await requestAPI(`volumes/${encodeURIComponent(name)}`, { method: 'DELETE' });
    if (this.volume === name) {
      this._close();
    }
    await this.refreshVolumes();
  }

  private _close(): void {
    this.volume = null;
    this.path = '';
    this.entries = [];
    this.total = 0;
    this.history = [];
    this._folderChanged.emit();
    this._historyChanged.emit();
  }

  /** Open a volume at its root. */
  async open(name: string): Promise<void> {
    this.volume = name;
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
    const page = await this._page(0);
    this.entries = page.entries;
    this.total = page.total;
    this._folderChanged.emit();
  }

  /** Append the next page of a large folder. */
  async loadMore(): Promise<void> {
    const page = await this._page(this.entries.length);
    this.entries = this.entries.concat(page.entries);
    this.total = page.total;
    this._folderChanged.emit();
  }

  private _page(offset: number): Promise<IFolderPage> {
    const path = encodePath(this.path);
    return requestAPI<IFolderPage>(
      this._vol(`/tree${path ? '/' + path : ''}?offset=${offset}&limit=${PAGE_SIZE}`)
    );
  }

  async newFolder(name: string): Promise<void> {
    await sendJSON(this._vol('/folders'), 'POST', { path: joinPath(this.path, name) });
    await this._changed();
  }

  /** Rename `entry` within its folder. */
  async rename(entry: IEntry, newName: string): Promise<void> {
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

  /** The URL that downloads a file (cookie-authenticated, streamed by the server). */
  downloadUrl(entry: IEntry, at?: number): string {
    const q = at === undefined ? '' : `?at=${at}`;
    return apiUrl(this._vol(`/files/${encodePath(entry.path)}${q}`));
  }

  /** Let the browser download `entry` (no copy of the file in page memory). */
  download(entry: IEntry): void {
    const a = document.createElement('a');
    a.href = this.downloadUrl(entry);
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
   * Upload files into the current folder, one at a time, in checksummed chunks.
   *
   * @param confirmOverwrite - asked when a file exists; true uploads over it
   * @returns the uploads that failed (each also has `state: "error"` and `error`)
   */
  async upload(
    files: File[],
    confirmOverwrite: (path: string) => Promise<boolean>
  ): Promise<IUpload[]> {
    const folder = this.path;
    const items = files.map(file => {
      const u: IUpload = {
        key: ++this._uploadKey,
        name: file.name,
        path: joinPath(folder, file.name),
        total: file.size,
        loaded: 0,
        state: 'uploading'
      };
      return { file, u };
    });
    this.uploads = this.uploads.filter(u => u.state !== 'done').concat(items.map(i => i.u));
    this._uploadsChanged.emit();
    const failed: IUpload[] = [];
    for (const { file, u } of items) {
      try {
        await this._uploadOne(file, u, confirmOverwrite);
        u.state = 'done';
      } catch (e) {
        u.state = 'error';
        u.error = (e as Error).message;
        failed.push(u);
      }
      this._uploadsChanged.emit();
    }
    await this._changed();
    return failed;
  }

  /** Forget finished and failed uploads. */
  clearUploads(): void {
    this.uploads = this.uploads.filter(u => u.state === 'uploading' || u.state === 'committing');
    this._uploadsChanged.emit();
  }

  private async _uploadOne(
    file: File,
    u: IUpload,
    confirmOverwrite: (path: string) => Promise<boolean>
  ): Promise<void> {
    let session: IUploadSession;
    try {
      session = await sendJSON<IUploadSession>(this._vol('/uploads'), 'POST', {
        path: u.path,
        size: file.size
      });
    } catch (e) {
      const err = e as ApiError;
      if (err.error !== 'AlreadyExistsError' || !(await confirmOverwrite(u.path))) {
        throw e;
      }
      session = await sendJSON<IUploadSession>(this._vol('/uploads'), 'POST', {
        path: u.path,
        size: file.size,
        force: true
      });
    }
    const route = this._vol(`/uploads/${session.upload_id}`);
    try {
      const whole = new Sha256();
      const step = session.chunk_size;
      for (let offset = 0; offset < file.size; offset += step) {
        const data = new Uint8Array(await file.slice(offset, offset + step).arrayBuffer());
        whole.update(data);
        await this._putChunk(route, offset, data);
        u.loaded = offset + data.length;
        this._uploadsChanged.emit();
      }
      u.state = 'committing';
      this._uploadsChanged.emit();
      await sendJSON(`${route}/finish`, 'POST', { size: file.size, sha256: whole.hexdigest() });
      u.loaded = file.size;
    } catch (e) {
      requestAPI(route, { method: 'DELETE' }).catch(() => undefined);
      throw e;
    }
  }

  private async _putChunk(route: string, offset: number, data: Uint8Array): Promise<void> {
    const digest = sha256Hex(data);
    for (let attempt = 1; ; attempt++) {
      try {
        await requestAPI(`${route}?offset=${offset}`, {
          method: 'PUT',
          body: new Blob([data as Uint8Array<ArrayBuffer>]),
          headers: { 'Content-Type': 'application/octet-stream', 'X-Content-SHA256': digest }
        });
        return;
      } catch (e) {
        const err = e as ApiError;
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
  async loadHistory(limit = 100): Promise<void> {
    if (this.volume === null) {
      return;
    }
    const page = await requestAPI<{ commits: ICommit[]; more: boolean }>(
      this._vol(`/history?limit=${limit}`)
    );
    this.history = page.commits;
    this.historyMore = page.more;
    this._historyChanged.emit();
  }

  /** What changed from commit `a` to `b` (default: the newest). */
  async diff(a: number, b?: number): Promise<IDiffEntry[]> {
    const q = b === undefined ? `a=${a}` : `a=${a}&b=${b}`;
    const res = await requestAPI<{ changes: IDiffEntry[] }>(this._vol(`/diff?${q}`));
    return res.changes;
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
