/**
 * The one way the sidebar talks to the server extension: `requestAPI<T>()` on the
 * REST API under `/jupyter-volume/api/` (documented in docs/rest-api.md).
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

export const API_PATH = 'jupyter-volume/api';
/** The REST API version this frontend speaks (the server's `api_version`). */
export const API_VERSION = 1;

/** A failed API call: HTTP status, the server's error type and readable message. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly error: string,
    message: string
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/** `encodeURIComponent` on each segment of a volume path, keeping the slashes. */
export function encodePath(path: string): string {
  return path
    .split('/')
    .filter(s => s !== '')
    .map(encodeURIComponent)
    .join('/');
}

/** The absolute URL of an API route (for links the browser follows itself). */
export function apiUrl(
  route: string,
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): string {
  return URLExt.join(settings.baseUrl, API_PATH, route);
}

/**
 * Call the API and return its JSON body (`undefined` for 204).
 *
 * @param route - route below /jupyter-volume/api/, with its query string
 * @param init - fetch options; a plain object `body` is not accepted: pass a string
 * @throws ApiError with the server's message, status 0 when the server is unreachable
 */
export async function requestAPI<T>(
  route: string,
  init: RequestInit = {},
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Promise<T> {
  const url = apiUrl(route, settings);
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new ApiError(0, 'NetworkError', `cannot reach the Jupyter server: ${error}`);
  }
  if (response.status === 204) {
    return undefined as T;
  }
  const text = await response.text();
  let data: any = text;
  if (text.length > 0) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (!response.ok) {
    const error = data && typeof data === 'object' ? data.error : undefined;
    const message =
      data && typeof data === 'object' && data.message
        ? data.message
        : `${response.status} ${response.statusText}`;
    throw new ApiError(response.status, error || `HTTP${response.status}`, message);
  }
  return data as T;
}

/** POST/PATCH with a JSON body. */
export function sendJSON<T>(route: string, method: string, body: unknown): Promise<T> {
  return requestAPI<T>(route, {
    method,
    body: JSON.stringify(body),
    headers: { 'Content-Type': 'application/json' }
  });
}
