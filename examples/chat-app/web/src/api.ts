// The one place the page talks HTTP: a bearer token on every request, and errors turned into
// sentences a user can act on (the server's own text for the user's mistakes, never internals).

export class ApiError extends Error {
  constructor(message: string, readonly status: number, readonly hint?: string) {
    super(message);
  }
}

// What a user reads for a failure that is not their own mistake.
export function plainError(status: number, serverText?: string): string {
  if (status === 0) return "The server cannot be reached. Check your connection and try again.";
  if (status === 401) return "Your sign-in has expired or was not accepted. Please sign in again.";
  if (status === 404) return "That conversation no longer exists, or is not yours.";
  if (status === 429) return "Too many requests for now. Wait a moment and try again.";
  if (status >= 500) return "The assistant could not answer just now. Try again.";
  return serverText || `The request was refused (HTTP ${status}).`;
}

export type Api = <T>(method: string, path: string, body?: unknown) => Promise<T>;

export function createApi(token: string, onUnauthorized: () => void, fetchImpl: typeof fetch = fetch): Api {
  return async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
    let res: Response;
    try {
      // a Blob (a recording) goes as it is, with its own type; anything else as JSON
      const raw = body instanceof Blob;
      res = await fetchImpl(path, {
        method,
        headers: {
          Authorization: `Bearer ${token}`,
          ...(body !== undefined ? { "Content-Type": raw ? body.type : "application/json" } : {}),
        },
        body: body === undefined ? undefined : raw ? body : JSON.stringify(body),
      });
    } catch {
      throw new ApiError(plainError(0), 0);
    }
    if (res.status === 401) {
      onUnauthorized();
      throw new ApiError(plainError(401), 401);
    }
    if (res.status === 204) return null as T;
    const type = res.headers.get("content-type") ?? "";
    if (res.ok && (type.startsWith("application/pdf") || type.startsWith("audio/"))) return (await res.blob()) as T;
    const isJson = res.headers.get("content-type")?.includes("json");
    const data = isJson ? await res.json() : await res.text();
    if (!res.ok) {
      const text = isJson && data && typeof data.error === "string" ? data.error : undefined;
      throw new ApiError(plainError(res.status, text), res.status, isJson ? data?.hint : undefined);
    }
    return data as T;
  };
}
