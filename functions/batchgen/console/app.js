// The batchgen web console: hash routes, one view per page, DOM built with h() (never innerHTML).
import { api, ApiError, cents, formatCredits, isAdmin, claims, setToken, token } from "./api.js";

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
    ["", "pending", "processing", "completed", "failed", "cancelled", "expired"].map((s) => h("option", { value: s }, s || "any")),
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
          h("td", {}, when(entry.createdAt)),
          admin ? h("td", {}, entry.userId) : null,
          h("td", {}, h("a", { href: `#/batch/${encodeURIComponent(entry.id)}` }, admin ? entry.id : entry.displayName || entry.id)),
          h("td", {}, entry.type.replace(/^batch-/, "")),
          h("td", {}, statusBadge(entry.status)),
          h("td", { class: "num" }, `${entry.successCount}/${entry.failCount}/${entry.requestCount}`),
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
  const table = tableOf(headers, [], admin ? "Every user's batches" : "Your batches");
  table.querySelector("tbody").replaceWith(rows);
  const controls = h("div", { class: "controls" }, h("label", { for: "status-filter" }, "Status"), filter);
  await load(true);
  return h("section", { "aria-label": admin ? "All batches" : "Batches" }, controls, table, more);
}

async function batches() {
  page("Batches", await batchList());
}

// ------------------------------------------------------------------------------------------ batch page
async function batchPage(id) {
  let batch = await api.status(id);
  const progress = h("progress", { id: "progress", max: 1, value: 0, "aria-describedby": "progress-text" });
  const progressText = h("p", { id: "progress-text", "aria-live": "polite" });
  const header = h("p", { class: "meta" });
  const gallery = h("ul", { class: "gallery", "aria-label": "Results" });
  const errors = h("ul", { class: "errors", "aria-label": "Errors" });
  const billing = h("p", { id: "gemini-billing", class: "meta" }); // admins only: what Gemini bills
  const cancel = h("button", { type: "button", class: "danger", id: "cancel" }, "Cancel batch");
  cancel.addEventListener("click", () =>
    guarded(cancel, async () => {
      render(await api.cancel(id));
    }),
  );

  function render(current) {
    batch = current;
    const s = current.summary;
    const done = s.completed + s.failed;
    const percent = s.total ? Math.round((100 * done) / s.total) : 100;
    progress.max = s.total || 1;
    progress.value = done;
    progress.setAttribute("aria-valuetext", `${percent} %`);
    progressText.textContent = `${done} of ${s.total} done (${percent} %): ${s.completed} succeeded, ${s.failed} failed, ${s.processing} processing, ${s.pending} pending.`;
    header.replaceChildren(
      statusBadge(current.status),
      ` ${current.type.replace(/^batch-/, "")} · ${current.model} · cost ${current.creditCost}, refunded ${current.refundedCredits} · created ${when(current.createdAt)}`,
    );
    gallery.replaceChildren(
      ...current.items
        .filter((item) => item.status === "success")
        .map((item) =>
          h(
            "li",
            {},
            item.imageUrl
              ? h("a", { href: item.imageUrl, target: "_blank", rel: "noopener" }, h("img", { src: item.imageUrl, alt: `Result for ${item.clientId}`, loading: "lazy" }))
              : h("pre", {}, item.text || ""),
            h("span", {}, item.clientId),
          ),
        ),
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
    errors.replaceChildren(...current.errors.map((message) => h("li", {}, message)));
    errors.hidden = !current.errors.length;
    cancel.hidden = TERMINAL.has(current.status);
  }

  page(
    batch.displayName || `Batch ${id}`,
    h("p", { class: "hint" }, id),
    header,
    billing,
    h("label", { for: "progress" }, "Progress"),
    progress,
    progressText,
    cancel,
    h("h2", {}, "Images"),
    gallery,
    h("h2", {}, "Errors"),
    errors,
  );
  render(batch);
  let timer = null;
  const tick = async () => {
    if (TERMINAL.has(batch.status)) return;
    try {
      render(await api.status(id));
    } catch (error) {
      showError(error);
    }
    if (!TERMINAL.has(batch.status)) timer = window.setTimeout(tick, POLL_MS);
  };
  timer = window.setTimeout(tick, POLL_MS);
  stopPolling = () => window.clearTimeout(timer);
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
  document.querySelector("[data-user]").hidden = isAdmin(); // admin accounts cannot create batches (403)
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
