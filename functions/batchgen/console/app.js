// The batchgen web console: hash routes, one view per page, DOM built with h() (never innerHTML).
import { api, ApiError, cents, formatCredits, isAdmin, claims, sendUpload, setToken, token } from "./api.js";

const main = document.getElementById("main");
const alertBox = document.getElementById("alert");
const nav = document.getElementById("nav");
const TERMINAL = new Set(["completed", "failed", "cancelled", "expired"]);
const POLL_MS = 1500;
let stopPolling = () => {};

// ------------------------------------------------------------------------------------------ helpers
function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "class") node.className = value;
    else if (key in node && key !== "list") node[key] = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function showError(error) {
  const message = error instanceof ApiError || error instanceof Error ? error.message : String(error);
  alertBox.textContent = message;
  alertBox.hidden = false;
  if (error instanceof ApiError && error.status === 401) {
    setToken("");
    window.location.hash = "#/signin";
  }
}

function clearError() {
  alertBox.hidden = true;
  alertBox.textContent = "";
}

function page(title, ...content) {
  const heading = h("h1", { tabindex: "-1" }, title);
  main.replaceChildren(heading, ...content);
  heading.focus(); // a screen reader hears the new page; keyboard focus starts at its top
  document.title = `${title} · batchgen console`;
}

function tableOf(headers, rows, caption) {
  return h(
    "div",
    { class: "table-wrap", tabindex: "0", role: "region", "aria-label": caption },
    h(
      "table",
      {},
      h("caption", { class: "visually-hidden" }, caption),
      h("thead", {}, h("tr", {}, headers.map((name) => h("th", { scope: "col" }, name)))),
      h("tbody", {}, rows),
    ),
  );
}

function when(iso) {
  return iso ? iso.slice(0, 16).replace("T", " ") : "";
}

/** A datetime-local value ("2026-12-01T09:30") as ISO 8601 with the browser's own UTC offset. */
function withOffset(local) {
  const moment = new Date(local);
  const minutes = -moment.getTimezoneOffset();
  const sign = minutes < 0 ? "-" : "+";
  const pad = (n) => String(Math.floor(Math.abs(n))).padStart(2, "0");
  return `${local.length === 16 ? `${local}:00` : local}${sign}${pad(minutes / 60)}:${pad(minutes % 60)}`;
}

function duration(fromIso, toIso) {
  const seconds = Math.max(0, Math.round((Date.parse(toIso) - Date.parse(fromIso)) / 1000));
  if (seconds < 60) return `${seconds} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${seconds % 60} s`;
  return `${Math.floor(seconds / 3600)} h ${Math.floor((seconds % 3600) / 60)} min`;
}

function statusBadge(status) {
  return h("span", { class: `badge badge-${status}` }, status);
}

async function guarded(button, action) {
  clearError();
  button.disabled = true;
  try {
    await action();
  } catch (error) {
    showError(error);
  } finally {
    button.disabled = false;
  }
}

// ------------------------------------------------------------------------------------------ sign-in
function signIn() {
  const input = h("input", { id: "token", name: "token", type: "password", autocomplete: "off", required: true });
  const form = h(
    "form",
    { class: "card", onsubmit: (event) => submitToken(event, input) },
    h("label", { for: "token" }, "Access token"),
    h("p", { class: "hint", id: "token-hint" }, "Paste the bearer token (JWT) you were given. It stays in this tab only."),
    input,
    h("button", { type: "submit" }, "Sign in"),
  );
  input.setAttribute("aria-describedby", "token-hint");
  page("Sign in", form);
}

async function submitToken(event, input) {
  event.preventDefault();
  const button = event.target.querySelector("button");
  setToken(input.value.trim());
  await guarded(button, async () => {
    await api.credits(); // a bad token answers 401 here, with the API's message
    window.location.hash = isAdmin() ? "#/admin" : "#/new";
  });
}

// ------------------------------------------------------------------------------------------ new batch
const TYPES = ["text-to-image", "character", "food", "product", "image-edit", "text"];

function readAsDataUrl(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(new Error(`Could not read ${file.name}.`));
    reader.readAsDataURL(file);
  });
}

async function newBatch() {
  const [catalog, account] = await Promise.all([api.catalog(), api.credits()]);
  const images = []; // {name, dataUrl}
  const select = (id, options, value) =>
    h("select", { id, name: id }, options.map((o) => h("option", { value: o, selected: o === value }, o)));

  const type = select("type", TYPES, "text-to-image");
  // Prices come from the catalog's one table (GET /catalog `prices`), for the type's default model.
  const modelPrices = () => catalog.prices[catalog.defaultModels[type.value]];
  const quality = select("quality", Object.keys(modelPrices().qualities), "1k");
  const ratio = select("aspectRatio", ["", ...catalog.aspectRatios], "");
  ratio.options[0].textContent = "default";
  const name = h("input", { id: "displayName", name: "displayName", maxLength: 200 });
  const shared = h("input", { id: "prompt", name: "prompt", placeholder: "e.g. Watercolour style" });
  const prompts = h("textarea", { id: "prompts", name: "prompts", rows: 6, "aria-describedby": "prompts-hint" });
  const price = h("p", { class: "price", id: "price", "aria-live": "polite" });
  const fileInput = h("input", {
    id: "images",
    type: "file",
    accept: "image/png,image/jpeg,image/webp",
    multiple: true,
    class: "visually-hidden",
    tabindex: "-1",
    "aria-label": "Images",
  });
  const imageList = h("ul", { class: "thumbs", "aria-label": "Selected images" });
  const drop = h(
    "div",
    { class: "drop", id: "drop" },
    h("p", {}, "Drop PNG, JPEG or WEBP images here, or "),
    h("button", { type: "button", class: "secondary", onclick: () => fileInput.click() }, "Choose images"),
    fileInput,
    imageList,
  );
  const submit = h("button", { type: "submit" }, "Create batch");
  // When it goes to Gemini: now, at a time (any zone: the browser's offset is sent), or off-peak.
  // (A tier and deadline choice joins this group when the service offers them.)
  const start = select("start", ["now", "at a time", "off-peak"], "now");
  const startAt = h("input", { id: "startAt", name: "startAt", type: "datetime-local", hidden: true, "aria-label": "Start at" });
  start.addEventListener("change", () => (startAt.hidden = start.value !== "at a time"));

  function requests() {
    const lines = prompts.value.split("\n").map((line) => line.trim()).filter(Boolean);
    return [
      ...lines.map((prompt) => ({ prompt })),
      ...images.map((image) => ({ id: image.name, imageBase64: image.dataUrl })),
    ];
  }

  function updatePrice() {
    const count = requests().length;
    const unit = cents(modelPrices().qualities[quality.value].batch[type.value]);
    const total = unit * count;
    const balance = cents(account.balance);
    price.textContent =
      `${count} request${count === 1 ? "" : "s"} × ${formatCredits(unit)} = ${formatCredits(total)} credits` +
      ` (batch rate). Balance ${formatCredits(balance)}` +
      (total > balance ? " — not enough credits." : `, ${formatCredits(balance - total)} after.`);
    price.classList.toggle("short", total > balance);
    submit.disabled = count === 0 || count > catalog.maxBatchRequests;
    if (count > catalog.maxBatchRequests) price.textContent += ` At most ${catalog.maxBatchRequests} requests per batch.`;
  }

  function renderImages() {
    imageList.replaceChildren(
      ...images.map((image, index) =>
        h(
          "li",
          {},
          h("img", { src: image.dataUrl, alt: image.name }),
          h(
            "button",
            {
              type: "button",
              class: "link",
              "aria-label": `Remove ${image.name}`,
              onclick: () => {
                images.splice(index, 1);
                renderImages();
              },
            },
            "Remove",
          ),
        ),
      ),
    );
    updatePrice();
  }

  async function addFiles(files) {
    clearError();
    for (const file of files) {
      if (!/^image\/(png|jpeg|webp)$/.test(file.type)) {
        showError(new Error(`${file.name} is not a PNG, JPEG or WEBP image.`));
        continue;
      }
      images.push({ name: file.name.replace(/\.[^.]+$/, "").slice(0, 100), dataUrl: await readAsDataUrl(file) });
    }
    if (images.length && type.value === "text-to-image") type.value = "image-edit";
    renderImages();
  }

  fileInput.addEventListener("change", () => addFiles([...fileInput.files]).then(() => (fileInput.value = "")));
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    addFiles([...event.dataTransfer.files]);
  });
  // The qualities the type's model delivers (text: 1k only), keeping the choice when it still exists.
  type.addEventListener("input", () => {
    const offered = Object.keys(modelPrices().qualities);
    const kept = offered.includes(quality.value) ? quality.value : offered[0];
    quality.replaceChildren(...offered.map((o) => h("option", { value: o, selected: o === kept }, o)));
    quality.value = kept;
  });
  for (const input of [type, quality, prompts]) input.addEventListener("input", updatePrice);

  const form = h(
    "form",
    {
      class: "card",
      onsubmit: (event) => {
        event.preventDefault();
        guarded(submit, async () => {
          const body = { type: type.value, requests: requests(), quality: quality.value };
          if (ratio.value) body.aspectRatio = ratio.value;
          if (shared.value.trim()) body.prompt = shared.value.trim();
          if (name.value.trim()) body.displayName = name.value.trim();
          if (start.value === "off-peak") body.offPeak = true;
          if (start.value === "at a time" && startAt.value) body.scheduleAt = withOffset(startAt.value);
          const created = await api.create(body);
          window.location.hash = `#/batch/${encodeURIComponent(created.id)}`;
        });
      },
    },
    h("div", { class: "grid" },
      h("div", {}, h("label", { for: "type" }, "Type"), type),
      h("div", {}, h("label", { for: "quality" }, "Quality"), quality),
      h("div", {}, h("label", { for: "aspectRatio" }, "Aspect ratio"), ratio),
      h("div", {}, h("label", { for: "displayName" }, "Name (optional)"), name),
      h("div", {}, h("label", { for: "start" }, "Start"), start, startAt),
    ),
    h("label", { for: "prompt" }, "Shared prompt (optional, put before every request)"),
    shared,
    h("label", { for: "prompts" }, "Prompts"),
    h("p", { class: "hint", id: "prompts-hint" }, "One request per line. Each image below is one more request."),
    prompts,
    drop,
    price,
    submit,
  );
  page("New batch", form);
  updatePrice();
}

// ------------------------------------------------------------------------------------------ batch list
async function batchList({ admin = false } = {}) {
  const rows = h("tbody");
  const more = h("button", { type: "button", class: "secondary", hidden: true }, "Load more");
  const filter = h(
    "select",
    { id: "status-filter" },
    ["", "validating", "scheduled", "pending", "processing", "completed", "failed", "cancelled", "expired"].map((s) => h("option", { value: s }, s || "any")),
  );
  let cursor = null;

  async function load(reset) {
    if (reset) {
      rows.replaceChildren();
      cursor = null;
    }
    const query = { limit: 20, status: filter.value, cursor };
    const { body, next } = await (admin ? api.adminBatches(query) : api.history(query));
    for (const entry of body) {
      rows.append(
        h(
          "tr",
          {},
          h("td", { class: "optional" }, when(entry.createdAt)),
          admin ? h("td", { class: "optional" }, entry.userId) : null,
          h("td", { class: "name" }, h("a", { href: `#/batch/${encodeURIComponent(entry.id)}` }, admin ? entry.id : entry.displayName || entry.id)),
          h("td", { class: "optional" }, entry.type.replace(/^batch-/, "")),
          h("td", {}, statusBadge(entry.status)),
          h("td", { class: "num optional" }, `${entry.successCount}/${entry.failCount}/${entry.requestCount}`),
          h("td", { class: "num" }, String(entry.creditCost)),
        ),
      );
    }
    if (!body.length && reset) rows.append(h("tr", {}, h("td", { colspan: admin ? 7 : 6 }, "No batches yet.")));
    cursor = next;
    more.hidden = !next;
  }

  more.addEventListener("click", () => guarded(more, () => load(false)));
  filter.addEventListener("change", () => load(true).catch(showError));
  const headers = ["Created", ...(admin ? ["User"] : []), admin ? "Batch" : "Name", "Type", "Status", "OK/failed/all", "Cost"];
  const optional = new Set(["Created", "User", "Type", "OK/failed/all"]); // hidden on a phone: status and cost stay
  const table = tableOf(headers, [], admin ? "Every user's batches" : "Your batches");
  table.querySelectorAll("th").forEach((th) => optional.has(th.textContent) && th.classList.add("optional"));
  table.querySelector("tbody").replaceWith(rows);
  const controls = h("div", { class: "controls" }, h("label", { for: "status-filter" }, "Status"), filter);
  await load(true);
  return h("section", { "aria-label": admin ? "All batches" : "Batches" }, controls, table, more);
}

async function batches() {
  page("Batches", await batchList());
}

// ------------------------------------------------------------------------------------------ batch page
const GALLERY_PAGE = 60;
const ITEMS_PAGE = 50;

async function batchPage(id) {
  let batch = await api.status(id);
  const progress = h("progress", { id: "progress", max: 1, value: 0, "aria-describedby": "progress-text" });
  const progressText = h("p", { id: "progress-text", "aria-live": "polite" });
  const header = h("p", { class: "meta" });
  const reason = h("p", { class: "reason", id: "failure-reason", hidden: true });
  const billing = h("p", { id: "gemini-billing", class: "billing", hidden: true }); // admins only: what Gemini bills
  const cancel = h("button", { type: "button", class: "danger", id: "cancel" }, "Cancel batch");
  const retry = h("button", { type: "button", class: "secondary", id: "retry", hidden: true }, "Retry failed");
  const downloads = h("section", { class: "card downloads", id: "downloads", "aria-labelledby": "downloads-heading", hidden: true });
  cancel.addEventListener("click", () => guarded(cancel, async () => render(await api.cancel(id))));
  retry.addEventListener("click", () =>
    guarded(retry, async () => {
      const created = await api.retry(id);
      window.location.hash = `#/batch/${encodeURIComponent(created.id)}`;
    }),
  );

  // The gallery: successful items a page at a time from GET /batch/{id}/items, however many there are.
  const gallery = h("ul", { class: "gallery", "aria-label": "Results" });
  const moreImages = h("button", { type: "button", class: "secondary", id: "more-images", hidden: true }, "Load more images");
  const shownItems = [];
  let galleryCursor = null;
  async function loadGallery(reset) {
    const { body, next } = await api.items(id, { status: "success", limit: GALLERY_PAGE, cursor: reset ? null : galleryCursor });
    if (reset) {
      shownItems.length = 0;
      gallery.replaceChildren();
    }
    for (const item of body) {
      shownItems.push(item);
      gallery.append(galleryTile(item, shownItems.length - 1));
    }
    galleryCursor = next;
    moreImages.hidden = !next;
  }
  moreImages.addEventListener("click", () => guarded(moreImages, () => loadGallery(false)));

  function galleryTile(item, index) {
    const label = item.prompt || item.clientId;
    const open = () => lightbox.show(index);
    const figure = item.imageUrl
      ? h("img", { src: item.imageUrl, alt: label, loading: "lazy" })
      : h("pre", {}, item.text || "");
    return h(
      "li",
      {},
      h("button", { type: "button", class: "tile", onclick: open, "aria-label": `Open ${label}` }, figure),
      h("span", { class: "caption", title: label }, label),
    );
  }

  const lightbox = makeLightbox(shownItems, () => batch);

  // Every item with its state, filtered by state (e.g. failed only), a page at a time.
  const itemRows = h("tbody");
  const itemFilter = h(
    "select",
    { id: "item-filter" },
    ["", "success", "failed", "cancelled", "processing", "pending"].map((s) => h("option", { value: s }, s || "any")),
  );
  const moreItems = h("button", { type: "button", class: "secondary", id: "more-items", hidden: true }, "Load more items");
  let itemsCursor = null;
  let itemsCount = 0;
  async function loadItems(reset) {
    if (reset) {
      itemRows.replaceChildren();
      itemsCursor = null;
      itemsCount = 0;
    }
    const { body, next } = await api.items(id, { status: itemFilter.value, limit: ITEMS_PAGE, cursor: itemsCursor });
    for (const item of body) {
      itemsCount += 1;
      const result = item.status === "success"
        ? (item.imageUrl ? h("a", { href: item.imageUrl, target: "_blank", rel: "noopener" }, "image") : item.text || "")
        : item.error || "";
      itemRows.append(
        h("tr", {},
          h("td", { class: "optional" }, item.clientId),
          h("td", {}, statusBadge(item.status)),
          h("td", { class: "wrap" }, item.prompt || ""),
          h("td", { class: "wrap" }, result),
        ),
      );
    }
    if (!itemsCount) itemRows.append(h("tr", {}, h("td", { colspan: 4 }, "No items in this state.")));
    itemsCursor = next;
    moreItems.hidden = !next;
  }
  itemFilter.addEventListener("change", () => loadItems(true).catch(showError));
  moreItems.addEventListener("click", () => guarded(moreItems, () => loadItems(false)));
  const itemsTable = tableOf(["Item", "Status", "Prompt", "Result or reason"], [], "Items");
  itemsTable.querySelector("tbody").replaceWith(itemRows);
  itemsTable.querySelector("th").classList.add("optional");

  function renderDownloads() {
    const command = `batchgen download ${id} ./${id}/`;
    const manifest = h("button", { type: "button", class: "secondary", id: "manifest" }, "Results manifest (JSONL)");
    manifest.addEventListener("click", () =>
      guarded(manifest, async () => {
        const link = await api.results(id);
        window.location.assign(link.url); // a presigned download link, valid for an hour
      }),
    );
    downloads.replaceChildren(
      h("h2", { id: "downloads-heading" }, "Download all"),
      h("p", { class: "hint" }, "Every image, resumable, with the command-line client (it reads the manifest and saves each file; a second run fetches only what is missing):"),
      h("pre", { class: "command", id: "download-command" }, command),
      h("button", { type: "button", class: "secondary", onclick: () => navigator.clipboard?.writeText(command) }, "Copy command"),
      " ",
      manifest,
    );
  }

  function render(current) {
    const wasRunning = !TERMINAL.has(batch.status);
    batch = current;
    const s = current.summary;
    const done = s.completed + s.failed + (s.cancelled || 0);
    const percent = s.total ? Math.round((100 * done) / s.total) : 100;
    progress.max = s.total || 1;
    progress.value = done;
    progress.setAttribute("aria-valuetext", `${percent} %`);
    if (current.status === "validating") {
      const read = current.validation || { requestsRead: 0 };
      progressText.textContent = `Reading the input file: ${read.requestsRead} requests so far. Nothing is charged until every line is valid.`;
    } else {
      progressText.textContent = `${done} of ${s.total} done (${percent} %): ${s.completed} succeeded, ${s.failed} failed` +
        `${s.cancelled ? `, ${s.cancelled} cancelled` : ""}, ${s.processing} processing, ${s.pending} pending.`;
    }
    header.replaceChildren(
      statusBadge(current.status),
      ` ${current.type.replace(/^batch-/, "")} · ${current.model} · cost ${current.creditCost}, refunded ${current.refundedCredits} · created ${when(current.createdAt)}`,
      current.scheduledFor ? ` · starts ${when(current.scheduledFor)} UTC` : "",
      current.displayName ? h("span", { class: "batch-id" }, ` · ${current.id}`) : "",
    );
    const g = current.geminiBilling;
    billing.hidden = !g;
    if (g) {
      const images = Object.entries(g.images).map(([size, n]) => `${n} × ${size}`).join(", ") || "no images";
      billing.textContent =
        `Gemini bills: ${images}; ${g.promptTokens} tokens in, ${g.outputTokens} text and ${g.imageTokens} image out, ` +
        `${g.thoughtsTokens} thinking; about $${Number(g.estimatedCostUsd).toFixed(4)} at the batch rate, ` +
        `for ${g.creditsCharged} credits charged.`;
    }
    reason.textContent = current.failureReason || "";
    reason.hidden = !current.failureReason;
    const ended = TERMINAL.has(current.status);
    cancel.hidden = ended;
    retry.hidden = !ended || current.successCount >= current.requestCount;
    downloads.hidden = !ended || !current.successCount;
    if (ended && downloads.hidden === false && !downloads.childElementCount) renderDownloads();
    return wasRunning && ended;
  }

  page(
    batch.displayName || `Batch ${id}`,
    header,
    reason,
    billing,
    h("label", { for: "progress" }, "Progress"),
    progress,
    progressText,
    h("div", { class: "actions" }, cancel, " ", retry),
    downloads,
    h("h2", {}, "Images"),
    gallery,
    moreImages,
    h("h2", {}, "Items"),
    h("div", { class: "controls" }, h("label", { for: "item-filter" }, "Status"), itemFilter),
    itemsTable,
    moreItems,
  );
  render(batch);
  await Promise.all([loadGallery(true), loadItems(true)]);
  let timer = null;
  const tick = async () => {
    if (TERMINAL.has(batch.status)) return;
    try {
      render(await api.status(id));
      if (!galleryCursor || shownItems.length <= GALLERY_PAGE) await loadGallery(true); // new results on the first page
      await loadItems(true);
    } catch (error) {
      showError(error);
    }
    if (!TERMINAL.has(batch.status)) timer = window.setTimeout(tick, POLL_MS);
  };
  timer = window.setTimeout(tick, POLL_MS);
  stopPolling = () => window.clearTimeout(timer);
}

/** A dialog showing one result large with its prompt, model, size, cost and time; arrows page through. */
function makeLightbox(shownItems, currentBatch) {
  const dialog = document.getElementById("lightbox");
  let index = 0;
  function show(at) {
    index = Math.max(0, Math.min(at, shownItems.length - 1));
    const item = shownItems[index];
    const batch = currentBatch();
    const unit = batch.requestCount ? formatCredits(Math.round(cents(batch.creditCost) / batch.requestCount)) : "0";
    const size = h("dd", { id: "lightbox-size" }, "…");
    const image = item.imageUrl ? h("img", { src: item.imageUrl, alt: item.prompt || item.clientId, id: "lightbox-image" }) : h("pre", {}, item.text || "");
    if (item.imageUrl) image.addEventListener("load", () => (size.textContent = `${image.naturalWidth} × ${image.naturalHeight} px`));
    else size.textContent = `${(item.text || "").length} characters`;
    const close = h("button", { type: "button", class: "secondary", onclick: () => dialog.close() }, "Close");
    dialog.replaceChildren(
      h("div", { class: "lightbox-body" },
        h("div", { class: "lightbox-figure" }, image),
        h("div", { class: "lightbox-facts" },
          h("h2", { id: "lightbox-title" }, `${index + 1} of ${shownItems.length}${batch.successCount > shownItems.length ? ` loaded (${batch.successCount} in all)` : ""}`),
          h("dl", {},
            h("dt", {}, "Prompt"), h("dd", { id: "lightbox-prompt" }, item.prompt || "(shared prompt only)"),
            h("dt", {}, "Model"), h("dd", { id: "lightbox-model" }, batch.model),
            h("dt", {}, "Size"), size,
            h("dt", {}, "Cost"), h("dd", { id: "lightbox-cost" }, `${unit} credits (batch rate)`),
            h("dt", {}, "Time"), h("dd", { id: "lightbox-time" }, item.finishedAt ? `ready ${duration(batch.createdAt, item.finishedAt)} after the batch was created` : "not finished"),
            h("dt", {}, "Item"), h("dd", {}, `${item.clientId} · ${item.generationId}`),
          ),
          h("div", { class: "actions" },
            h("button", { type: "button", class: "secondary", disabled: index === 0, onclick: () => show(index - 1) }, "Previous"),
            " ",
            h("button", { type: "button", class: "secondary", disabled: index >= shownItems.length - 1, onclick: () => show(index + 1) }, "Next"),
            " ",
            item.imageUrl ? h("a", { class: "button secondary", href: item.imageUrl, target: "_blank", rel: "noopener" }, "Open original") : "",
            " ",
            close,
          ),
        ),
      ),
    );
    dialog.setAttribute("aria-labelledby", "lightbox-title");
    if (!dialog.open) dialog.showModal();
  }
  dialog.onkeydown = (event) => {
    if (event.key === "ArrowRight") show(index + 1);
    if (event.key === "ArrowLeft") show(index - 1);
  };
  return { show };
}

// ------------------------------------------------------------------------------------------ credits
async function creditsPage() {
  const account = await api.credits();
  const rows = account.ledger.map((entry) =>
    h(
      "tr",
      {},
      h("td", {}, when(entry.at)),
      h("td", { class: "num" }, `${entry.delta > 0 ? "+" : ""}${entry.delta}`),
      h("td", {}, entry.reason),
      h("td", {}, entry.batchId ? h("a", { href: `#/batch/${encodeURIComponent(entry.batchId)}` }, entry.batchId) : ""),
    ),
  );
  page(
    "Credits",
    h("p", { class: "balance" }, "Balance: ", h("strong", { id: "balance" }, String(account.balance)), " credits"),
    tableOf(["When", "Change", "Reason", "Batch"], rows, "Latest ledger entries"),
  );
}

// ------------------------------------------------------------------------------------------ bulk upload
const BULK_TYPES = ["text-to-image", "character", "food", "product", "image-edit", "text"];

/** Thousands of requests: a JSONL file as it is, or a folder of images made into one in the browser; sent
 * to the presigned URL of POST /batch/uploads, then created with `inputFile` (validated, then charged). */
async function bulkPage() {
  let file = null; // the JSONL Blob to upload
  const type = h("select", { id: "bulk-type", name: "type" }, BULK_TYPES.map((t) => h("option", { value: t }, t)));
  const shared = h("input", { id: "bulk-prompt", name: "prompt", placeholder: "e.g. as a watercolour (needed for images)" });
  const name = h("input", { id: "bulk-name", name: "displayName", maxLength: 200 });
  const summary = h("p", { class: "price", id: "bulk-summary", "aria-live": "polite" }, "No file yet.");
  const jsonlInput = h("input", { id: "bulk-file", type: "file", accept: ".jsonl,application/jsonl,application/x-ndjson", class: "visually-hidden", tabindex: "-1", "aria-label": "JSONL file" });
  const folderInput = h("input", { id: "bulk-folder", type: "file", webkitdirectory: true, multiple: true, class: "visually-hidden", tabindex: "-1", "aria-label": "Folder of images" });
  const submit = h("button", { type: "submit", disabled: true }, "Upload and create batch");

  async function take(files) {
    clearError();
    const list = [...files];
    const jsonl = list.find((f) => /\.jsonl$/i.test(f.name));
    if (jsonl) {
      const lines = (await jsonl.text()).split("\n").filter((line) => line.trim()).length;
      file = jsonl;
      summary.textContent = `${jsonl.name}: ${lines} requests, sent as they are (the service checks every line and names the bad ones).`;
    } else {
      const images = list.filter((f) => /^image\/(png|jpeg|webp)$/.test(f.type)).sort((a, b) => a.name.localeCompare(b.name));
      if (!images.length) return showError(new Error("Drop a .jsonl file, or PNG, JPEG or WEBP images (a whole folder works)."));
      const lines = [];
      for (const image of images) {
        lines.push(JSON.stringify({ id: image.name.replace(/\.[^.]+$/, "").slice(0, 100), imageBase64: await readAsDataUrl(image) }));
      }
      file = new Blob([lines.join("\n") + "\n"], { type: "application/jsonl" });
      type.value = "image-edit";
      summary.textContent = `${images.length} images, one image-edit request each (${Math.round(file.size / 1024)} KB to upload).`;
    }
    submit.disabled = false;
  }

  jsonlInput.addEventListener("change", () => take(jsonlInput.files));
  folderInput.addEventListener("change", () => take(folderInput.files));
  const drop = h(
    "div",
    { class: "drop", id: "bulk-drop" },
    h("p", {}, "Drop a JSONL file (one {id?, prompt?, imageBase64?} per line) or a folder of images here, or "),
    h("button", { type: "button", class: "secondary", onclick: () => jsonlInput.click() }, "Choose a JSONL file"),
    " ",
    h("button", { type: "button", class: "secondary", onclick: () => folderInput.click() }, "Choose a folder"),
    jsonlInput,
    folderInput,
  );
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", async (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    await take(await droppedFiles(event.dataTransfer));
  });

  const form = h(
    "form",
    {
      class: "card",
      onsubmit: (event) => {
        event.preventDefault();
        guarded(submit, async () => {
          const ticket = await api.upload();
          if (file.size > ticket.maxBytes) throw new Error(`The file is ${file.size} bytes; at most ${ticket.maxBytes}.`);
          await sendUpload(ticket, file);
          const body = { type: type.value, inputFile: ticket.uploadId };
          if (shared.value.trim()) body.prompt = shared.value.trim();
          if (name.value.trim()) body.displayName = name.value.trim();
          const created = await api.create(body);
          window.location.hash = `#/batch/${encodeURIComponent(created.id)}`;
        });
      },
    },
    h("p", { class: "hint" }, "Up to 10,000 requests per batch. The file is checked line by line before anything is charged."),
    drop,
    summary,
    h("div", { class: "grid" },
      h("div", {}, h("label", { for: "bulk-type" }, "Type"), type),
      h("div", {}, h("label", { for: "bulk-name" }, "Name (optional)"), name),
    ),
    h("label", { for: "bulk-prompt" }, "Shared prompt"),
    shared,
    submit,
  );
  page("Bulk upload", form);
}

/** Files of a drop, folders walked (a dropped folder arrives as one directory entry). */
async function droppedFiles(transfer) {
  const entries = [...transfer.items].map((item) => item.webkitGetAsEntry && item.webkitGetAsEntry()).filter(Boolean);
  if (!entries.some((entry) => entry.isDirectory)) return [...transfer.files];
  const files = [];
  async function walk(entry) {
    if (entry.isFile) files.push(await new Promise((resolve, reject) => entry.file(resolve, reject)));
    else if (entry.isDirectory) {
      const reader = entry.createReader();
      for (;;) {
        const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
        if (!batch.length) break;
        for (const child of batch) await walk(child);
      }
    }
  }
  for (const entry of entries) await walk(entry);
  return files;
}

// ------------------------------------------------------------------------------------------ webhooks
const EVENTS = ["batch.completed", "batch.failed", "batch.cancelled", "batch.expired", "batch.item.succeeded", "batch.item.failed"];

async function webhooksPage() {
  const url = h("input", { id: "hook-url", name: "url", type: "url", required: true, placeholder: "https://example.com/hooks/batchgen" });
  const description = h("input", { id: "hook-description", name: "description", maxLength: 200 });
  const boxes = EVENTS.map((name) => h("label", { class: "check" }, h("input", { type: "checkbox", value: name }), ` ${name}`));
  const secret = h("p", { id: "hook-secret", role: "status", class: "secret" });
  const add = h("button", { type: "submit" }, "Add endpoint");
  const endpointRows = h("tbody");
  const deliveryRows = h("tbody");
  const moreDeliveries = h("button", { type: "button", class: "secondary", hidden: true }, "Load more deliveries");
  let deliveriesCursor = null;

  async function loadEndpoints() {
    const endpoints = await api.endpoints();
    endpointRows.replaceChildren(
      ...endpoints.map((endpoint) => {
        const test = h("button", { type: "button", class: "link" }, "Send test");
        test.addEventListener("click", () => guarded(test, async () => {
          await api.testEndpoint(endpoint.id);
          secret.textContent = `A webhook.test event is on its way to ${endpoint.url}.`;
          window.setTimeout(() => loadDeliveries(true).catch(showError), 2000);
        }));
        const remove = h("button", { type: "button", class: "link" }, "Delete");
        remove.addEventListener("click", () => guarded(remove, async () => {
          await api.deleteEndpoint(endpoint.id);
          await loadEndpoints();
        }));
        return h("tr", {},
          h("td", { class: "wrap" }, endpoint.url, endpoint.disabled ? " (disabled: it answered 410)" : ""),
          h("td", { class: "wrap optional" }, endpoint.events.length ? endpoint.events.join(", ") : "every batch event"),
          h("td", {}, test, " · ", remove),
        );
      }),
    );
    if (!endpoints.length) endpointRows.append(h("tr", {}, h("td", { colspan: 3 }, "No endpoints yet.")));
  }

  async function loadDeliveries(reset) {
    if (reset) {
      deliveryRows.replaceChildren();
      deliveriesCursor = null;
    }
    const page = await api.deliveries({ limit: 20, cursor: deliveriesCursor });
    for (const d of page.deliveries) {
      deliveryRows.append(h("tr", {},
        h("td", {}, when(d.at)),
        h("td", {}, d.type),
        h("td", { class: "num" }, d.statusCode === null ? "—" : String(d.statusCode)),
        h("td", { class: "num optional" }, String(d.attempt)),
        h("td", { class: "wrap optional" }, d.error || (d.nextAttemptAt ? `next try ${when(d.nextAttemptAt)}` : "")),
      ));
    }
    if (reset && !page.deliveries.length) deliveryRows.append(h("tr", {}, h("td", { colspan: 5 }, "No deliveries yet.")));
    deliveriesCursor = page.nextCursor;
    moreDeliveries.hidden = !page.nextCursor;
  }
  moreDeliveries.addEventListener("click", () => guarded(moreDeliveries, () => loadDeliveries(false)));

  const form = h(
    "form",
    {
      class: "card",
      onsubmit: (event) => {
        event.preventDefault();
        guarded(add, async () => {
          const events = boxes.map((label) => label.querySelector("input")).filter((box) => box.checked).map((box) => box.value);
          const created = await api.addEndpoint({ url: url.value.trim(), events, description: description.value.trim() || undefined });
          secret.textContent = `Signing secret (shown only now; keep it): ${created.secret}`;
          url.value = "";
          await loadEndpoints();
        });
      },
    },
    h("h2", {}, "Add an endpoint"),
    h("label", { for: "hook-url" }, "URL"),
    url,
    h("label", { for: "hook-description" }, "Description (optional)"),
    description,
    h("fieldset", {}, h("legend", {}, "Events (none ticked: every batch event)"), boxes),
    add,
    secret,
  );
  const endpointsTable = tableOf(["URL", "Events", ""], [], "Your webhook endpoints");
  endpointsTable.querySelector("tbody").replaceWith(endpointRows);
  endpointsTable.querySelectorAll("th")[1].classList.add("optional");
  const deliveriesTable = tableOf(["At", "Event", "Answer", "Attempt", "Error or next try"], [], "Delivery log");
  deliveriesTable.querySelector("tbody").replaceWith(deliveryRows);
  deliveriesTable.querySelectorAll("th").forEach((th, i) => i >= 3 && th.classList.add("optional"));
  page("Webhooks", form, h("h2", {}, "Endpoints"), endpointsTable, h("h2", {}, "Delivery log"), deliveriesTable, moreDeliveries);
  await Promise.all([loadEndpoints(), loadDeliveries(true)]);
}

// ------------------------------------------------------------------------------------------ templates
async function templatesPage() {
  const name = h("input", { id: "tpl-name", name: "name", required: true, maxLength: 200 });
  const type = h("select", { id: "tpl-type", name: "type" }, BULK_TYPES.map((t) => h("option", { value: t }, t)));
  const prompt = h("input", { id: "tpl-prompt", name: "prompt", placeholder: "{{product}} on a white background" });
  const lines = h("textarea", { id: "tpl-requests", name: "requests", rows: 3 });
  const save = h("button", { type: "submit" }, "Save template");
  const rows = h("tbody");

  async function load() {
    const templates = await api.templates();
    rows.replaceChildren(
      ...templates.map((template) => {
        const variables = h("input", { "aria-label": `Variables for ${template.name}`, placeholder: template.variables.map((v) => `${v}=…`).join(", ") });
        const use = h("button", { type: "button", class: "link" }, "Create batch");
        use.addEventListener("click", () => guarded(use, async () => {
          const values = Object.fromEntries(variables.value.split(",").map((pair) => pair.split("=").map((part) => part.trim())).filter(([k, v]) => k && v));
          const created = await api.create({ templateId: template.id, variables: values });
          window.location.hash = `#/batch/${encodeURIComponent(created.id)}`;
        }));
        const remove = h("button", { type: "button", class: "link" }, "Delete");
        remove.addEventListener("click", () => guarded(remove, async () => {
          await api.deleteTemplate(template.id);
          await load();
        }));
        return h("tr", {},
          h("td", { class: "wrap" }, template.name),
          h("td", { class: "optional" }, template.type),
          h("td", { class: "wrap optional" }, template.prompt || ""),
          h("td", {}, template.variables.length ? variables : "", " ", use, " · ", remove),
        );
      }),
    );
    if (!templates.length) rows.append(h("tr", {}, h("td", { colspan: 4 }, "No templates yet.")));
  }

  const form = h(
    "form",
    {
      class: "card",
      onsubmit: (event) => {
        event.preventDefault();
        guarded(save, async () => {
          const requests = lines.value.split("\n").map((line) => line.trim()).filter(Boolean).map((line) => ({ prompt: line }));
          const body = { name: name.value.trim(), type: type.value };
          if (prompt.value.trim()) body.prompt = prompt.value.trim();
          if (requests.length) body.requests = requests;
          await api.addTemplate(body);
          name.value = "";
          await load();
        });
      },
    },
    h("h2", {}, "New template"),
    h("div", { class: "grid" },
      h("div", {}, h("label", { for: "tpl-name" }, "Name"), name),
      h("div", {}, h("label", { for: "tpl-type" }, "Type"), type),
    ),
    h("label", { for: "tpl-prompt" }, "Shared prompt ({{name}} placeholders are filled when you create)"),
    prompt,
    h("label", { for: "tpl-requests" }, "Requests (one prompt per line)"),
    lines,
    save,
  );
  const table = tableOf(["Name", "Type", "Prompt", ""], [], "Your templates");
  table.querySelector("tbody").replaceWith(rows);
  table.querySelectorAll("th").forEach((th, i) => (i === 1 || i === 2) && th.classList.add("optional"));
  page("Templates", form, h("h2", {}, "Saved"), table);
  await load();
}

// ------------------------------------------------------------------------------------------ schedules
/** Batches waiting for their start time (create them on New batch with Start: at a time, or off-peak). */
async function schedulesPage() {
  const { body } = await api.history({ status: "scheduled", limit: 100 });
  const details = await Promise.all(body.map((entry) => api.status(entry.id)));
  const rows = details.map((batch) => {
    const cancel = h("button", { type: "button", class: "link" }, "Cancel (full refund)");
    cancel.addEventListener("click", () => guarded(cancel, async () => {
      await api.cancel(batch.id);
      await schedulesPage();
    }));
    return h("tr", {},
      h("td", {}, `${when(batch.scheduledFor)} UTC`),
      h("td", { class: "name" }, h("a", { href: `#/batch/${encodeURIComponent(batch.id)}` }, batch.displayName || batch.id)),
      h("td", { class: "num" }, String(batch.creditCost)),
      h("td", {}, cancel),
    );
  });
  if (!rows.length) rows.push(h("tr", {}, h("td", { colspan: 4 }, "Nothing scheduled. On New batch, choose Start: at a time or off-peak.")));
  page("Scheduled", tableOf(["Starts", "Batch", "Cost", ""], rows, "Scheduled batches"));
}

// ------------------------------------------------------------------------------------------ admin
async function adminPage() {
  const user = h("input", { id: "grant-user", name: "userId", required: true, autocomplete: "off" });
  const amount = h("input", { id: "grant-amount", name: "amount", type: "number", step: "0.01", required: true });
  const reason = h("input", { id: "grant-reason", name: "reason", required: true, value: "admin grant" });
  const result = h("p", { id: "grant-result", role: "status" });
  const submit = h("button", { type: "submit" }, "Grant credits");
  const form = h(
    "form",
    {
      class: "card",
      "aria-labelledby": "grant-heading",
      onsubmit: (event) => {
        event.preventDefault();
        guarded(submit, async () => {
          const granted = await api.grant({ userId: user.value.trim(), amount: Number(amount.value), reason: reason.value.trim() });
          result.textContent = `${granted.userId} now has ${granted.balance} credits.`;
        });
      },
    },
    h("h2", { id: "grant-heading" }, "Grant or debit credits"),
    h("div", { class: "grid" },
      h("div", {}, h("label", { for: "grant-user" }, "User id"), user),
      h("div", {}, h("label", { for: "grant-amount" }, "Amount (negative debits)"), amount),
      h("div", {}, h("label", { for: "grant-reason" }, "Reason"), reason),
    ),
    submit,
    result,
  );
  page("Admin", form, usageForm(), h("h2", {}, "Every user's batches"), await batchList({ admin: true }));
}

/** What Gemini billed for one user's answers per day, beside the credits charged (GET /admin/users/{id}/usage). */
function usageForm() {
  const user = h("input", { id: "usage-user", name: "userId", required: true, autocomplete: "off" });
  const submit = h("button", { type: "submit" }, "Show usage");
  const headers = ["Day", "Images 1K/2K/4K", "Tokens in", "Out (text/image)", "Thinking", "Gemini cost (est.)", "Credits"];
  const table = tableOf(headers, [], "Gemini usage per day");
  return h(
    "form",
    {
      class: "card",
      "aria-labelledby": "usage-heading",
      onsubmit: (event) => {
        event.preventDefault();
        guarded(submit, async () => {
          const days = await api.usage(user.value.trim(), {});
          const rows = table.querySelector("tbody");
          rows.replaceChildren(
            ...days.map((d) =>
              h("tr", {},
                h("td", {}, d.day),
                h("td", {}, `${d.images["1K"]}/${d.images["2K"]}/${d.images["4K"]}`),
                h("td", {}, String(d.promptTokens)),
                h("td", {}, `${d.outputTokens}/${d.imageTokens}`),
                h("td", {}, String(d.thoughtsTokens)),
                h("td", {}, `$${Number(d.estimatedCostUsd).toFixed(4)}`),
                h("td", {}, String(d.creditsCharged)),
              ),
            ),
          );
          if (!days.length) rows.append(h("tr", {}, h("td", { colspan: headers.length }, "No answers in the last 30 days.")));
        });
      },
    },
    h("h2", { id: "usage-heading" }, "What Gemini bills, per day"),
    h("div", { class: "grid" }, h("div", {}, h("label", { for: "usage-user" }, "Account"), user)),
    submit,
    table,
  );
}

// ------------------------------------------------------------------------------------------ router
const ROUTES = [
  [/^#\/new$/, newBatch],
  [/^#\/batches$/, batches],
  [/^#\/batch\/(.+)$/, (id) => batchPage(decodeURIComponent(id))],
  [/^#\/credits$/, creditsPage],
  [/^#\/bulk$/, bulkPage],
  [/^#\/webhooks$/, webhooksPage],
  [/^#\/templates$/, templatesPage],
  [/^#\/schedules$/, schedulesPage],
  [/^#\/admin$/, adminPage],
];

async function route() {
  stopPolling();
  stopPolling = () => {};
  const hash = window.location.hash;
  const fromLink = /^#token=(.+)$/.exec(hash); // the local runtime prints such a link: it signs in
  if (fromLink) {
    setToken(decodeURIComponent(fromLink[1]));
    window.history.replaceState(null, "", `${window.location.pathname}${isAdmin() ? "#/admin" : "#/new"}`);
    return route();
  }
  const signedIn = Boolean(token());
  nav.hidden = !signedIn;
  document.getElementById("who").textContent = signedIn ? `${claims().sub || ""}${isAdmin() ? " (admin)" : ""}` : "";
  document.querySelector("[data-admin]").hidden = !isAdmin();
  for (const entry of document.querySelectorAll("[data-user]")) entry.hidden = isAdmin(); // admins cannot create batches (403)
  for (const link of nav.querySelectorAll("a[data-page]")) {
    if (hash.startsWith(`#/${link.dataset.page}`)) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (!signedIn) return signIn();
  const match = ROUTES.map(([pattern, view]) => [pattern.exec(hash), view]).find(([found]) => found);
  if (!match) {
    window.location.hash = isAdmin() ? "#/admin" : "#/new";
    return undefined;
  }
  clearError();
  const [found, view] = match;
  try {
    await view(...found.slice(1));
  } catch (error) {
    showError(error);
  }
  return undefined;
}

document.getElementById("sign-out").addEventListener("click", () => {
  setToken("");
  window.location.hash = "#/signin";
});
window.addEventListener("hashchange", route);
route();
