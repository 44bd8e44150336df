// The batchgen API from TypeScript: openapi-fetch typed by the types openapi-typescript generated from the
// service's own /openapi.json (src/schema.d.ts, `make ts-client`), plus the helpers a user keeps writing:
// waitForBatch, uploadJsonl, results (the manifest, streamed) and webhook signature verification.
import createClient, { type Client } from "openapi-fetch";
import { Webhook } from "standardwebhooks";

import type { components, paths } from "./schema.js";

export type { components, paths } from "./schema.js";
export type Schemas = components["schemas"];
export type BatchStatus = Schemas["BatchStatusResponse"];
export type CreateBatchRequest = Schemas["CreateBatchRequest"];
export type CreateBatchResponse = Schemas["CreateBatchResponse"];
export type ItemView = Schemas["ItemView"];
export type UploadTicket = Schemas["UploadResponse"] & { fields?: Record<string, string> | null };
/** The item states `GET /batch/{id}/items` filters by (the service's own list, from its document). */
export type ItemStatusFilter = NonNullable<NonNullable<paths["/batch/{batch_id}/items"]["get"]["parameters"]["query"]>["status"]>;
export type ErrorBody = Schemas["ErrorBody"] & { required?: number; available?: number };
export type BatchgenClient = Client<paths>;

export const TERMINAL_STATES: ReadonlySet<string> = new Set(["completed", "failed", "cancelled", "expired"]);

/** An error answer of the API: `status` and the error body `{error, message, details?}` (402 adds
 * `required` and `available`). */
export class BatchgenError extends Error {
  readonly status: number;
  readonly body: ErrorBody;

  constructor(status: number, body: Partial<ErrorBody> | undefined) {
    const message = body?.message ?? `The service answered ${status}.`;
    super(message);
    this.name = "BatchgenError";
    this.status = status;
    this.body = { error: body?.error ?? "Error", message, ...body } as ErrorBody;
  }
}

export interface ClientOptions {
  /** The API's base URL, e.g. http://127.0.0.1:3001 or the stack's ApiUrl. */
  baseUrl: string;
  /** A user's JWT (sent as `Authorization: Bearer`). */
  token: string;
  fetch?: (input: Request) => Promise<Response>;
}

/** A typed client: `api.GET("/batch/status/{batch_id}", { params: { path: { batch_id } } })`. */
export function createBatchgenClient({ baseUrl, token, fetch }: ClientOptions): BatchgenClient {
  return createClient<paths>({
    baseUrl: baseUrl.replace(/\/+$/, ""),
    headers: { Authorization: `Bearer ${token}` },
    ...(fetch ? { fetch } : {}),
  });
}

/** The data of an openapi-fetch answer, or a BatchgenError carrying the API's error body. */
export function unwrap<T>(answer: { data?: T; error?: unknown; response: Response }): T {
  if (answer.error !== undefined || !answer.response.ok) {
    throw new BatchgenError(answer.response.status, answer.error as Partial<ErrorBody> | undefined);
  }
  return answer.data as T;
}

export interface WaitOptions {
  /** Called with every status read (the last one too). */
  onProgress?: (batch: BatchStatus) => void;
  /** Aborting stops the wait (the batch goes on); the promise rejects with the signal's reason. */
  signal?: AbortSignal;
  intervalMs?: number;
}

/** Polls `GET /batch/status/{id}` until the batch has ended. */
export async function waitForBatch(api: BatchgenClient, id: string, options: WaitOptions = {}): Promise<BatchStatus> {
  const { onProgress, signal, intervalMs = 2000 } = options;
  for (;;) {
    signal?.throwIfAborted();
    const batch = unwrap(await api.GET("/batch/status/{batch_id}", { params: { path: { batch_id: id } }, signal }));
    onProgress?.(batch);
    if (batch.isComplete || TERMINAL_STATES.has(batch.status)) return batch;
    await sleep(intervalMs, signal);
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(done, ms);
    function done() {
      signal?.removeEventListener("abort", aborted);
      resolve();
    }
    function aborted() {
      clearTimeout(timer);
      reject(signal?.reason);
    }
    signal?.addEventListener("abort", aborted, { once: true });
  });
}

/** A JSONL file of requests (one `{id?, prompt?, imageBase64?}` per line) for a bulk batch:
 * `POST /batch/uploads`, then the file where the answer says. Returns the `uploadId` for
 * `POST /batch/create` `{type, inputFile}`. */
export async function uploadJsonl(
  api: BatchgenClient,
  body: Blob | Uint8Array<ArrayBuffer> | string,
  fetchImpl: typeof fetch = fetch,
): Promise<string> {
  const ticket = unwrap(await api.POST("/batch/uploads")) as UploadTicket;
  const file = body instanceof Blob ? body : new Blob([body], { type: "application/jsonl" });
  if (file.size > ticket.maxBytes) {
    throw new BatchgenError(413, { error: "Payload too large", message: `The file is ${file.size} bytes; at most ${ticket.maxBytes}.` });
  }
  await sendUpload(ticket, file, fetchImpl);
  return ticket.uploadId;
}

/** The one place that speaks the upload protocol: a form POST when the ticket has `fields` (a size-bound
 * S3 POST policy: its fields first, the file last), else the file as the body of `method` with `headers`. */
export async function sendUpload(ticket: UploadTicket, file: Blob, fetchImpl: typeof fetch = fetch): Promise<void> {
  let answer: Response;
  if (ticket.fields) {
    const form = new FormData();
    for (const [name, value] of Object.entries(ticket.fields)) form.append(name, value);
    form.append("file", file, "requests.jsonl");
    answer = await fetchImpl(ticket.uploadUrl, { method: ticket.method || "POST", headers: ticket.headers, body: form });
  } else {
    answer = await fetchImpl(ticket.uploadUrl, { method: ticket.method, headers: ticket.headers, body: file });
  }
  if (!answer.ok) {
    throw new BatchgenError(answer.status, { error: "Upload failed", message: (await answer.text()).slice(0, 300) || "The upload was refused." });
  }
}

/** Every item in request order, however many: an ended batch's results manifest streamed line by line
 * (waiting while the service writes it, 409 + Retry-After), a running batch's items a page at a time. */
export async function* results(
  api: BatchgenClient,
  id: string,
  { fetch: fetchImpl = fetch, signal }: { fetch?: typeof fetch; signal?: AbortSignal } = {},
): AsyncGenerator<ItemView> {
  const batch = unwrap(await api.GET("/batch/status/{batch_id}", { params: { path: { batch_id: id } }, signal }));
  if (!TERMINAL_STATES.has(batch.status)) {
    yield* items(api, id, { signal });
    return;
  }
  const link = await manifest(api, id, signal);
  const answer = await fetchImpl(link.url, { signal });
  if (!answer.ok || !answer.body) throw new BatchgenError(answer.status, { error: "Download failed", message: "The manifest could not be read." });
  let rest = "";
  const decoder = new TextDecoder();
  for await (const chunk of answer.body as unknown as AsyncIterable<Uint8Array>) {
    rest += decoder.decode(chunk, { stream: true });
    const lines = rest.split("\n");
    rest = lines.pop() ?? "";
    for (const line of lines) if (line.trim()) yield JSON.parse(line) as ItemView;
  }
  if (rest.trim()) yield JSON.parse(rest) as ItemView;
}

async function manifest(api: BatchgenClient, id: string, signal?: AbortSignal): Promise<Schemas["ResultsManifest"]> {
  for (let attempt = 0; ; attempt++) {
    const answer = await api.GET("/batch/{batch_id}/results", { params: { path: { batch_id: id } }, signal });
    const retryAfter = answer.response.headers.get("Retry-After");
    if (answer.response.status === 409 && retryAfter && attempt < 30) {
      await sleep(Number(retryAfter) * 1000, signal);
      continue;
    }
    return unwrap(answer);
  }
}

/** Every item (or those in `status`), following `X-Next-Cursor` across `GET /batch/{id}/items` pages. */
export async function* items(
  api: BatchgenClient,
  id: string,
  { status, pageSize = 1000, signal }: { status?: ItemStatusFilter; pageSize?: number; signal?: AbortSignal } = {},
): AsyncGenerator<ItemView> {
  let cursor: string | undefined;
  do {
    const query = { limit: pageSize, ...(status ? { status } : {}), ...(cursor ? { cursor } : {}) };
    const answer = await api.GET("/batch/{batch_id}/items", { params: { path: { batch_id: id }, query }, signal });
    yield* unwrap(answer);
    cursor = answer.response.headers.get("X-Next-Cursor") ?? undefined;
  } while (cursor);
}

/** Checks a webhook delivery (Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature`
 * over the raw body, within 5 minutes) with the endpoint's `whsec_…` secret; returns the parsed event or
 * throws. Pass the body exactly as received, before any JSON parsing. */
export function verifyWebhook(
  secret: string,
  rawBody: string | Uint8Array,
  headers: Record<string, string | string[] | undefined>,
): { type: string; timestamp: string; data: Record<string, unknown> } {
  const flat: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined) flat[name.toLowerCase()] = Array.isArray(value) ? value.join(" ") : value;
  }
  return new Webhook(secret).verify(rawBody, flat) as { type: string; timestamp: string; data: Record<string, unknown> };
}
