// The TypeScript client against a running service (`make test` starts one and sets BATCHGEN_URL,
// BATCHGEN_TOKEN for a user with credits and BATCHGEN_BROKE_TOKEN for one without).
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { createServer, type IncomingHttpHeaders } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import {
  BatchgenError,
  createBatchgenClient,
  items,
  results,
  uploadJsonl,
  unwrap,
  verifyWebhook,
  waitForBatch,
  type BatchStatus,
} from "../src/index.js";

const baseUrl = required("BATCHGEN_URL");
const api = createBatchgenClient({ baseUrl, token: required("BATCHGEN_TOKEN") });
const PACKAGE = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const FAST = { intervalMs: 500 };
const PNG =
  "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAEElEQVR4nGP4z8AARAwQCgAf7gP9i18U1AAAAABJRU5ErkJggg==";

function required(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run these tests through \`make test\` (or set it by hand)`);
  return value;
}

test("the checked-in types are what openapi-typescript makes of the served /openapi.json", async () => {
  const served = await (await fetch(`${baseUrl}/openapi.json`)).text();
  const folder = mkdtempSync(join(tmpdir(), "batchgen-types-"));
  writeFileSync(join(folder, "openapi.json"), served);
  const generator = join(PACKAGE, "node_modules", ".bin", "openapi-typescript");
  execFileSync(generator, [join(folder, "openapi.json"), "-o", join(folder, "schema.d.ts")], { stdio: "pipe" });
  const fresh = readFileSync(join(folder, "schema.d.ts"), "utf8");
  const checkedIn = readFileSync(join(PACKAGE, "src", "schema.d.ts"), "utf8");
  assert.ok(fresh === checkedIn, "src/schema.d.ts drifted from the served document: run `make ts-client` and commit it");
});

test("seed 003's Variant 2 flow: POST /api/generate/batch, then poll the jobIds until isComplete", async () => {
  const created = unwrap(
    await api.POST("/api/generate/batch", {
      body: {
        prompt: "Add white background",
        model: "flux-2",
        quality: "1k",
        aspectRatio: "1:1",
        images: [
          { id: "client-id-1", data: PNG },
          { id: "client-id-2", data: PNG },
        ],
      },
    }),
  );
  assert.equal(created.status, "queued");
  const jobIds = created.jobs.map((job) => job.generationId).join(",");
  let done;
  for (let attempt = 0; attempt < 120; attempt++) {
    done = unwrap(await api.GET("/api/generate/batch", { params: { query: { batchId: created.batchId, jobIds } } }));
    if (done.isComplete) break;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  assert.ok(done?.isComplete);
  assert.deepEqual(
    done.results.map((r) => r.status),
    ["success", "success"],
  );
  assert.ok(done.results.every((r) => r.imageUrl?.startsWith("http")));
});

test("seed 000's flow: create, waitForBatch with progress, results in request order, a failed item's reason", async () => {
  const created = unwrap(
    await api.POST("/batch/create", {
      body: {
        type: "character",
        prompt: "Anime girl with blue hair",
        requests: [{ prompt: "front pose" }, { prompt: "side pose [[fail]]" }],
      },
    }),
  );
  const seen: string[] = [];
  const final = await waitForBatch(api, created.id, { ...FAST, onProgress: (batch) => seen.push(batch.status) });
  assert.equal(final.status, "completed");
  assert.equal(seen.at(-1), "completed");
  assert.equal(final.summary.completed, 1);
  assert.equal(final.summary.failed, 1);
  const all = [];
  for await (const item of results(api, created.id)) all.push(item);
  assert.deepEqual(
    all.map((item) => [item.clientId, item.status]),
    [
      ["request-1", "success"],
      ["request-2", "failed"],
    ],
  );
  assert.match(all[1].error ?? "", /\[\[fail\]\]/);
});

test("waitForBatch stops when its signal is aborted (the batch goes on)", async () => {
  const created = unwrap(
    await api.POST("/batch/create", { body: { type: "text", requests: [{ prompt: "a slow one" }] } }),
  );
  const controller = new AbortController();
  const waiting = waitForBatch(api, created.id, {
    ...FAST,
    signal: controller.signal,
    onProgress: () => controller.abort(new Error("stop watching")),
  });
  await assert.rejects(waiting, /stop watching/);
  const final: BatchStatus = await waitForBatch(api, created.id, FAST);
  assert.equal(final.status, "completed");
});

test("uploadJsonl, a bulk create, and results past 100 items (the manifest, streamed)", async () => {
  const lines = Array.from({ length: 130 }, (_, n) => JSON.stringify({ id: `sku-${n}`, prompt: `slogan ${n}` })).join("\n");
  const uploadId = await uploadJsonl(api, lines + "\n");
  const created = unwrap(await api.POST("/batch/create", { body: { type: "text", inputFile: uploadId } }));
  assert.equal(created.status, "validating");
  assert.equal(created.requestCount, null);
  const final = await waitForBatch(api, created.id, FAST);
  assert.equal(final.summary.total, 130);
  assert.equal(final.items.length, 100); // the status body pages; results() does not stop there
  const ids = [];
  for await (const item of results(api, created.id)) ids.push(item.clientId);
  assert.equal(ids.length, 130);
  assert.equal(ids[129], "sku-129");
  let paged = 0;
  for await (const _ of items(api, created.id, { pageSize: 50 })) paged++;
  assert.equal(paged, 130);
});

test("errors carry the API's body: 402 with required and available, 404, 401", async () => {
  const broke = createBatchgenClient({ baseUrl, token: required("BATCHGEN_BROKE_TOKEN") });
  const answer = await broke.POST("/batch/create", { body: { type: "product", requests: [{ prompt: "a" }] } });
  assert.equal(answer.response.status, 402);
  assert.equal(answer.error?.error, "Insufficient credits");
  assert.throws(() => unwrap(answer), (error: unknown) => {
    assert.ok(error instanceof BatchgenError);
    assert.equal(error.body.required, 2.5);
    assert.equal(error.body.available, 0);
    return true;
  });
  await assert.rejects(waitForBatch(api, "batch_missing"), (error: unknown) => error instanceof BatchgenError && error.status === 404);
  const stranger = createBatchgenClient({ baseUrl, token: "not-a-token" });
  const denied = await stranger.GET("/credits");
  assert.equal(denied.response.status, 401);
  assert.equal(denied.error?.error, "Unauthorized");
});

test("verifyWebhook accepts a real signed delivery and refuses a tampered one", async () => {
  const received: { body: string; headers: IncomingHttpHeaders }[] = [];
  const server = createServer((request, response) => {
    let body = "";
    request.on("data", (chunk) => (body += chunk));
    request.on("end", () => {
      received.push({ body, headers: request.headers });
      response.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  try {
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`;
    const endpoint = unwrap(await api.POST("/webhooks/endpoints", { body: { url, description: "ts client test" } }));
    unwrap(await api.POST("/webhooks/endpoints/{endpoint_id}/test", { params: { path: { endpoint_id: endpoint.id } } }));
    for (let waited = 0; received.length === 0 && waited < 60_000; waited += 200) {
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    assert.equal(received.length, 1, "no delivery within 60 s");
    const [delivery] = received;
    const headers = delivery.headers as Record<string, string>;
    const event = verifyWebhook(endpoint.secret, delivery.body, headers);
    assert.equal(event.type, "webhook.test");
    assert.throws(() => verifyWebhook(endpoint.secret, delivery.body.replace("webhook.test", "batch.completed"), headers));
    assert.throws(() => verifyWebhook("whsec_" + Buffer.from("another key").toString("base64"), delivery.body, headers));
    await api.DELETE("/webhooks/endpoints/{endpoint_id}", { params: { path: { endpoint_id: endpoint.id } } });
  } finally {
    server.close();
  }
});
