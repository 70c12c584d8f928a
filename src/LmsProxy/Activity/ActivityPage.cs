namespace LmsProxy.Activity;

/// <summary>
/// The status page's activity section: a table of requests (in flight at the top, with their state and elapsed time
/// and a Cancel button; recent ones below) and a chart of requests and tokens per second per model over the last
/// hour, both from GET /activity every two seconds (a poll, like the rest of the page: no connection left open).
/// Text set with textContent only.
/// </summary>
internal static class ActivityPage
{
    public const string Html = """
<h2>Requests</h2>
<div class="muted"><label><input type="checkbox" id="all-paths"> also LM Studio paths without a model (model lists, downloads)</label></div>
<div class="activity-chart"><svg id="chart" width="720" height="150" role="img" aria-label="Requests and tokens per second per model, last hour"></svg>
<div id="chart-legend" class="legend"></div></div>
<div class="scroll">
<table class="models activity">
  <thead><tr><th>#</th><th>Started</th><th>State</th><th>Time</th><th>Model</th><th>Host</th><th>Client</th><th>Key</th><th>Status</th>
    <th>Held</th><th>Load</th><th>TTFT</th><th>Tokens in → out</th><th>Tok/s</th><th>Error</th><th></th></tr></thead>
  <tbody id="activity"></tbody>
</table>
</div>
<style>
  .activity td { white-space: nowrap; font-size: .88rem; }
  .activity tr.live td { background: #f3f7ff; }
  .activity-chart { margin: .4rem 0 .6rem; }
  #chart { background: #fafbfc; border: 1px solid #e5e7eb; border-radius: 4px; }
</style>
""";

    /// <summary>Runs after the page's own script: it uses its helpers ($, text, say, skew).</summary>
    public const string Script = """
<script>
const palette = ["#3b82f6", "#e8890c", "#2f9e5b", "#8b5cf6", "#b42318", "#0891b2", "#ca8a04", "#db2777"];
const ms = v => v == null ? "" : v < 1000 ? v + " ms" : (v / 1000).toFixed(1) + " s";
let activity = [];

function activityRow(r, now) {
  const tr = document.createElement("tr");
  tr.dataset.activity = r.id;
  const live = r.state !== "done";
  if (live) tr.className = "live";
  const started = Date.parse(r.startedAt);
  const tokens = r.promptTokens == null && r.completionTokens == null ? "" : (r.promptTokens ?? "?") + " → " + (r.completionTokens ?? "?") + (r.tokensEstimated ? " (counted)" : "");
  const outcome = r.cancelled ? "cancelled" : r.error ?? "";
  tr.append(text("td", r.id), text("td", new Date(started).toLocaleTimeString()), text("td", r.state, live ? "busy" : "muted"),
    text("td", live ? ms(Math.max(0, now - started)) : ms(r.durationMs)), text("td", r.model ?? r.endpoint), text("td", r.host),
    text("td", r.client), text("td", r.key), text("td", r.status, r.status >= 400 ? "bad" : ""), text("td", ms(r.heldMs)),
    text("td", r.loadMs ? ms(r.loadMs) : ""), text("td", ms(r.ttftMs)), text("td", tokens), text("td", r.tokensPerSecond == null ? "" : r.tokensPerSecond.toFixed(1)),
    text("td", outcome, outcome ? "bad" : ""));
  const actions = document.createElement("td");
  if (live) {
    const b = text("button", "Cancel");
    b.dataset.cancel = r.id;
    actions.append(b);
  }
  tr.append(actions);
  return tr;
}

function renderActivity() {
  const now = Date.now() + skew;
  const shown = activity.filter(r => $("all-paths").checked || r.model != null);
  const live = shown.filter(r => r.state !== "done"), done = shown.filter(r => r.state === "done");
  $("activity").replaceChildren(...live.concat(done).slice(0, 100).map(r => activityRow(r, now)));
  renderChart(shown, now);
}

// Per model and minute of the last hour: a bar for the requests, a line for the mean tokens per second.
function renderChart(records, now) {
  const svg = $("chart"), ns = "http://www.w3.org/2000/svg", W = 720, H = 150, pad = 24;
  const el = (name, attrs, content) => { const e = document.createElementNS(ns, name); for (const k in attrs) e.setAttribute(k, attrs[k]); if (content != null) e.textContent = content; return e; };
  const start = now - 3600000;
  const models = [...new Set(records.filter(r => r.model != null && Date.parse(r.startedAt) >= start).map(r => r.resolvedModel ?? r.model))].sort();
  const minutes = models.map(m => Array.from({ length: 60 }, () => ({ n: 0, tps: 0, k: 0 })));
  for (const r of records) {
    const t = Date.parse(r.startedAt), i = models.indexOf(r.resolvedModel ?? r.model);
    if (t < start || i < 0) continue;
    const b = minutes[i][Math.min(59, Math.floor((t - start) / 60000))];
    b.n++;
    if (r.tokensPerSecond != null) { b.tps += r.tokensPerSecond; b.k++; }
  }
  const maxN = Math.max(1, ...minutes.flat().map(b => b.n)), maxT = Math.max(1, ...minutes.flat().map(b => b.k ? b.tps / b.k : 0));
  const x = i => pad + i * (W - 2 * pad) / 60, bw = (W - 2 * pad) / 60 / Math.max(1, models.length);
  const parts = [el("text", { x: 2, y: 12, "font-size": 10, fill: "#666" }, "requests/min (bars, max " + maxN + ") · tokens/s (lines, max " + maxT.toFixed(0) + ")"),
    el("line", { x1: pad, y1: H - pad, x2: W - pad, y2: H - pad, stroke: "#ccc" }),
    el("text", { x: pad, y: H - 8, "font-size": 10, fill: "#666" }, "−60 min"), el("text", { x: W - pad - 20, y: H - 8, "font-size": 10, fill: "#666" }, "now")];
  models.forEach((m, i) => {
    const colour = palette[i % palette.length];
    const points = [];
    minutes[i].forEach((b, j) => {
      if (b.n) parts.push(el("rect", { x: x(j) + i * bw, y: H - pad - (H - 2 * pad) * b.n / maxN, width: Math.max(1, bw - 1), height: (H - 2 * pad) * b.n / maxN, fill: colour, opacity: .35, "data-model": m }));
      if (b.k) points.push((x(j) + bw / 2).toFixed(1) + "," + (H - pad - (H - 2 * pad) * (b.tps / b.k) / maxT).toFixed(1));
    });
    if (points.length) parts.push(el("polyline", { points: points.join(" "), fill: "none", stroke: colour, "stroke-width": 2, "data-model": m }));
  });
  svg.replaceChildren(...parts);
  $("chart-legend").replaceChildren(...models.flatMap((m, i) => { const s = text("span", "", "swatch"); s.style.backgroundColor = palette[i % palette.length]; return [s, text("span", m)]; }));
}

async function refreshActivity() {
  try {
    const response = await fetch("activity?limit=1000&since=" + encodeURIComponent(new Date(Date.now() + skew - 3600000).toISOString()), { cache: "no-store" });
    if (!response.ok) return;
    activity = (await response.json()).requests;
    renderActivity();
  } catch (e) {
    // The status part says when the proxy cannot be reached.
  }
}

$("all-paths").addEventListener("change", renderActivity);
$("activity").addEventListener("click", async e => {
  const button = e.target.closest("button[data-cancel]");
  if (!button) return;
  button.disabled = true;
  const response = await fetch("activity/" + button.dataset.cancel + "/cancel", { method: "POST", headers: { "X-LmsProxy-Action": "1" } });
  say(response.ok ? "Request " + button.dataset.cancel + " cancelled." : "Request " + button.dataset.cancel + " is no longer in flight.", response.ok);
  refreshActivity();
});
refreshActivity();
setInterval(refreshActivity, 2000);
setInterval(renderActivity, 1000);
</script>
""";
}
