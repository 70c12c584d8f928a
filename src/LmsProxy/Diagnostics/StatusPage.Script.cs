namespace LmsProxy.Diagnostics;

internal static partial class StatusPage
{
    /// <summary>
    /// The page's own script: renders /status (hosts, memory bars, models with their load progress, queues, the
    /// timeline) and re-renders on every "status" event of GET /events. Text is set with textContent only.
    /// </summary>
    private const string Script = """
<script>
const $ = id => document.getElementById(id);
const text = (tag, value, cls) => { const e = document.createElement(tag); e.textContent = value ?? ""; if (cls) e.className = cls; return e; };
const gb = bytes => (bytes / 1e9).toFixed(1) + " GB";
const shortName = key => key.slice(key.lastIndexOf("/") + 1);
const duration = ms => ms < 1000 ? Math.round(ms) + " ms" : (ms / 1000).toFixed(1) + " s";
let skew = 0; // the server's clock minus this browser's, when they differ by more than 2 s
const now = () => Date.now() + skew;
function ago(iso) {
  if (!iso) return "";
  const s = Math.max(0, (now() - Date.parse(iso)) / 1000);
  return s < 60 ? Math.round(s) + " s ago" : s < 3600 ? Math.round(s / 60) + " min ago" : s < 86400 ? Math.round(s / 3600) + " h ago" : Math.round(s / 86400) + " d ago";
}

/** How far a loading instance is: the server's progress (lms's percentage, or its estimate) and time left; null when unknown. */
function progress(instance, lastLoadMs) {
  const elapsed = instance?.loadStartedAt ? Math.max(0, now() - Date.parse(instance.loadStartedAt)) : null;
  const expected = instance?.lastLoadMs ?? lastLoadMs;
  const percent = instance?.loadProgress != null ? 100 * instance.loadProgress
    : elapsed != null && expected ? Math.min(99, 100 * elapsed / expected) : null;
  return { elapsed, expected, percent, etaMs: instance?.etaMs ?? null, source: instance?.progressSource ?? "estimate" };
}

function hostCard(h) {
  const c = h.capacity;
  const card = text("section", null, "host" + (h.healthy ? "" : " down"));
  card.dataset.host = h.name;
  const title = text("h3", h.name + " ");
  title.append(text("span", h.healthy ? "healthy" : "down", "pill " + (h.healthy ? "healthy" : "down")), text("span", " " + h.url, "muted"));
  card.append(title, text("div", "Loader: " + h.loader.name + " — " + h.loader.reason, "muted"));
  if (h.operation) card.append(text("div", "Now: " + h.operation, "busy"));
  if (h.lastError) card.append(text("div", h.lastError, "bad"));

  const instances = h.instances.filter(i => i.state !== "gone");
  const scale = Math.max(c.effectiveBudgetBytes, c.usedBytes) || 1;
  const bar = text("div", null, "memory");
  for (const i of instances) {
    const p = i.state === "loading" ? progress(i, null) : null;
    const seg = text("div", shortName(i.model) + (p?.percent != null ? " " + Math.round(p.percent) + "%" : ""), "seg " + i.state + (i.pinned ? " pinned" : ""));
    seg.dataset.segment = i.model;
    seg.style.width = (100 * i.estimatedBytes / scale).toFixed(2) + "%";
    seg.title = i.model + ": " + i.state + ", about " + gb(i.estimatedBytes) + (i.inFlight ? ", " + i.inFlight + " in flight" : "")
      + (i.pinned ? ", pinned" : "") + (i.loadedByProxy ? "" : ", loaded outside the proxy");
    bar.append(seg);
  }
  const budget = c.effectiveBudgetBytes;
  const summary = text("div", gb(c.usedBytes) + " of " + (budget ? gb(budget) : "? GB") + ", " + c.loadedModels + " of " + (c.maxLoadedModels || "∞") + " models",
    budget && c.usedBytes > budget ? "memory-text bad" : "memory-text");
  const note = budget === 0 ? "budget unknown, learned from LM Studio's refusals"
    : c.learnedCeilingBytes > 0 && c.learnedCeilingBytes === budget
      ? "ceiling " + gb(c.learnedCeilingBytes) + " learned from LM Studio's refusals" + (c.memoryBudgetBytes ? " (configured " + gb(c.memoryBudgetBytes) + ")" : "")
      : "budget from Capacity:MemoryBudgetBytes";
  summary.append(text("span", " — " + note, "muted"));
  card.append(bar, summary, text("div", "Idle unload after " + c.idleUnloadAfter + " · swap wait up to " + c.maxSwapWait
    + (c.evictForeign ? " · may unload models loaded outside the proxy" : ""), "muted"));
  return card;
}

// One row per model, kept between refreshes so that a button is never replaced under the pointer.
const rows = new Map();
function row(key) {
  let r = rows.get(key);
  if (r) return r;
  const tr = document.createElement("tr");
  tr.dataset.model = key;
  const cells = Array.from({ length: 11 }, () => document.createElement("td"));
  const buttons = ["load", "unload", "pin"].map(action => {
    const b = text("button", null);
    b.dataset.action = action;
    b.dataset.model = key;
    return b;
  });
  const actions = text("td", null, "actions");
  actions.append(...buttons);
  tr.append(...cells, actions);
  r = { tr, cells, buttons };
  rows.set(key, r);
  return r;
}
function fill(td, value, cls) {
  if (value instanceof Node) td.replaceChildren(value); else td.textContent = value ?? "";
  if (cls) td.className = cls; else td.removeAttribute("class");
}
const STATE_CLASS = { idle: "ok", busy: "ok", "not loaded": "muted" };

function loadCell(m, s) {
  if (m.state !== "loading") return m.lastLoadMs == null ? "" : Math.round(m.lastLoadMs) + " ms";
  const instance = s.hosts.flatMap(h => h.instances).find(i => i.model === m.key && i.state === "loading");
  const p = progress(instance, m.lastLoadMs);
  const cell = text("span", null, "load-progress");
  const bar = text("span", null, "progress" + (p.percent == null ? " unknown" : "")), inner = text("div", null);
  if (p.percent != null) inner.style.width = p.percent.toFixed(1) + "%";
  bar.append(inner);
  bar.dataset.progress = p.percent == null ? "" : p.percent.toFixed(0);
  const elapsed = p.elapsed == null ? "" : duration(p.elapsed);
  const eta = p.etaMs == null ? "" : " · ~" + duration(p.etaMs) + " left";
  const label = p.percent == null ? "first load" + (elapsed ? ", " + elapsed : "")
    : Math.floor(p.percent) + "%" + eta + (p.source === "lms" ? "" : " (estimate)");
  cell.append(bar, text("span", label, "eta"));
  return cell;
}

function renderModels(s) {
  const order = s.models.map(m => {
    const { tr, cells, buttons } = row(m.key);
    const values = [
      [m.key], [m.state, STATE_CLASS[m.state] ?? "busy"], [String(m.held)], [loadCell(m, s)], [m.inFlight ? String(m.inFlight) : ""],
      [m.pinned ? "pinned" : "", "ok"], [ago(m.lastUsedAt)], [m.estimatedBytes ? gb(m.estimatedBytes) : ""], [m.hosts.join(", ")],
      [m.waiting, "busy"], [m.lastError, "bad"],
    ];
    values.forEach(([value, cls], i) => fill(cells[i], value, cls));
    if (m.lastErrorAt) cells[10].title = ago(m.lastErrorAt); else cells[10].removeAttribute("title");
    const [load, unload, pin] = buttons;
    load.textContent = "Load";
    load.disabled = m.state !== "not loaded";
    unload.textContent = "Unload";
    unload.disabled = m.state !== "idle" && m.state !== "busy";
    pin.textContent = m.pinned ? "Unpin" : "Pin";
    pin.dataset.action = m.pinned ? "unpin" : "pin";
    return tr;
  });
  const keys = new Set(s.models.map(m => m.key));
  for (const key of [...rows.keys()]) if (!keys.has(key)) rows.delete(key);
  const body = $("models");
  if (order.length !== body.children.length || order.some((tr, i) => body.children[i] !== tr)) body.replaceChildren(...order);
}

const WAITING_FOR = { load: "its load", swap: "a swap", room: "room on a host", slot: "a free slot" };
function renderQueues(s) {
  const queues = s.queues ?? [];
  const queueRows = queues.map(q => {
    const tr = document.createElement("tr");
    tr.dataset.queue = q.model;
    const oldest = q.waiters.length ? duration(Math.max(...q.waiters.map(w => w.ageMs))) : "";
    tr.append(text("td", q.model), text("td", WAITING_FOR[q.waitingFor] ?? q.waitingFor), text("td", String(q.waiters.length)), text("td", oldest),
      text("td", q.loadProgress == null ? "" : Math.floor(100 * q.loadProgress) + "%"), text("td", q.etaMs == null ? "unknown" : "~" + duration(q.etaMs)),
      text("td", q.situation ?? "", "muted"));
    return tr;
  });
  if (!queueRows.length) { $("queues").replaceChildren(); return; }
  const table = document.createElement("table");
  const head = document.createElement("tr");
  for (const h of ["Model", "Waiting for", "Requests", "Oldest", "Progress", "Served in", "Why"]) head.append(text("th", h));
  const thead = document.createElement("thead"), tbody = document.createElement("tbody");
  thead.append(head);
  tbody.append(...queueRows);
  table.append(thead, tbody);
  $("queues").replaceChildren(text("h2", "Waiting requests"), table);
}

const ICONS = { load: "▲", unload: "▼", swap: "⇄", refusal: "⊘", failure: "✖", dropped: "↓", found: "◆", spill: "↪" };
function renderEvents(s) {
  const unloads = Object.entries(s.unloads).map(([reason, count]) => reason + " " + count).join(", ");
  $("totals").textContent = "Unloads: " + (unloads || "none") + " · Swaps: " + s.swaps;

  const events = [...s.events].reverse(); // newest first
  const end = now();
  const start = Math.min(end - 60000, ...events.map(e => Date.parse(e.at) - (e.durationMs ?? 0)));
  const percent = t => (100 * (t - start) / (end - start)).toFixed(2) + "%";
  $("strip").replaceChildren(...events.map(e => {
    const mark = text("div", null, "mark " + e.kind);
    const at = Date.parse(e.at);
    mark.style.left = percent(at - (e.durationMs ?? 0));
    if (e.durationMs) mark.style.width = (100 * e.durationMs / (end - start)).toFixed(2) + "%";
    mark.title = e.kind + " " + e.model + " on " + e.host + (e.reason ? ": " + e.reason : "") + " (" + new Date(at).toLocaleTimeString() + ")";
    return mark;
  }));
  $("strip-start").textContent = ago(new Date(start).toISOString());

  $("events").replaceChildren(...events.map(e => {
    const tr = document.createElement("tr");
    tr.dataset.kind = e.kind;
    const when = text("td", ago(e.at), "muted");
    when.title = new Date(Date.parse(e.at)).toLocaleString();
    const kind = text("td");
    kind.append(text("span", (ICONS[e.kind] ?? "•") + " " + e.kind, "kind " + e.kind));
    tr.append(when, kind, text("td", e.host), text("td", e.model), text("td", e.reason), text("td", e.durationMs == null ? "" : duration(e.durationMs)));
    return tr;
  }));
}

function render(s) {
    $("version").textContent = "v" + s.version;
    $("upstream").replaceChildren(text("span", "LM Studio " + s.upstream.url + ": "), text("span", s.upstream.reachable ? "answers" : "not reachable", s.upstream.reachable ? "ok" : "bad"), text("span", s.upstream.reachable ? "" : " (" + s.upstream.detail + ")"));
    // With hosts, each card names its loader; the page-wide line is for a proxy without any.
    $("loader").textContent = s.hosts.length ? "" : "Loader: " + s.loader.name + " — " + s.loader.reason;
    $("warnings").replaceChildren(...(s.warnings ?? []).map(w => text("div", w)));
    $("hosts").replaceChildren(...s.hosts.map(hostCard));
    renderModels(s);
    renderQueues(s);
    renderEvents(s);
    $("refreshed").textContent = new Date().toLocaleTimeString();
}

async function refresh() {
  try {
    const response = await fetch("status", { cache: "no-store" });
    if (!response.ok) throw new Error("HTTP " + response.status);
    const s = await response.json();
    const serverSkew = Date.parse(response.headers.get("date")) - Date.now();
    skew = Math.abs(serverSkew) > 2000 ? serverSkew : 0;
    render(s);
  } catch (e) {
    $("upstream").replaceChildren(text("span", "Cannot read /status: " + e.message, "bad"));
  }
}

let messageTimer;
function say(message, ok) {
  const m = $("message");
  m.textContent = message;
  m.className = ok ? "ok" : "bad";
  clearTimeout(messageTimer);
  messageTimer = setTimeout(() => { m.textContent = ""; }, 6000);
}

$("models").addEventListener("click", async e => {
  const button = e.target.closest("button[data-action]");
  if (!button) return;
  const { action, model } = button.dataset;
  button.disabled = true;
  try {
    const response = await fetch("models/" + encodeURIComponent(model) + "/" + action, { method: "POST", headers: { "X-LmsProxy-Action": "1" } });
    const body = await response.json().catch(() => ({}));
    say(body.message ?? body.error?.message ?? body.error ?? (response.ok ? "'" + model + "' " + action + "ned." : "HTTP " + response.status), response.ok);
  } catch (error) {
    say("Cannot " + action + " '" + model + "': " + error.message, false);
  }
  refresh();
});

refresh();
// The server says when something changed (GET /events); the browser reconnects by itself if the stream drops.
const events = new EventSource("events");
events.addEventListener("status", e => render(JSON.parse(e.data)));
events.onerror = () => $("refreshed").textContent = "— live updates interrupted, reconnecting";
</script>
""";
}
