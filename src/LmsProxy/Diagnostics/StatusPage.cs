namespace LmsProxy.Diagnostics;

/// <summary>A read-only page that renders /status and refreshes itself every two seconds.</summary>
internal static class StatusPage
{
    public const string Html = """
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>LmsProxy</title>
<style>
  body { font: 14px system-ui, sans-serif; margin: 2rem; color: #222; }
  h1 { font-size: 1.4rem; margin-bottom: .2rem; }
  .muted { color: #666; }
  table { border-collapse: collapse; margin-top: 1rem; }
  th, td { text-align: left; padding: .35rem .8rem; border-bottom: 1px solid #ddd; }
  .ok { color: #17803d; font-weight: 600; } .bad { color: #b42318; font-weight: 600; } .busy { color: #b54708; font-weight: 600; }
</style>
</head>
<body>
<h1>LmsProxy <span id="version" class="muted"></span></h1>
<div id="upstream">Loading status…</div>
<div id="loader" class="muted"></div>
<table>
  <thead><tr><th>Model</th><th>State</th><th>Held now</th><th>Last load</th><th>Last error</th></tr></thead>
  <tbody id="models"></tbody>
</table>
<p class="muted">Refreshed <span id="refreshed">never</span>. Raw data: <a href="status">/status</a>, <a href="metrics">/metrics</a>.</p>
<script>
const text = (tag, value, cls) => { const e = document.createElement(tag); e.textContent = value ?? ""; if (cls) e.className = cls; return e; };
async function refresh() {
  try {
    const response = await fetch("status", { cache: "no-store" });
    if (!response.ok) throw new Error("HTTP " + response.status);
    const s = await response.json();
    document.getElementById("version").textContent = "v" + s.version;
    const up = document.getElementById("upstream");
    up.replaceChildren(text("span", "LM Studio " + s.upstream.url + ": "), text("span", s.upstream.reachable ? "answers" : "not reachable", s.upstream.reachable ? "ok" : "bad"), text("span", s.upstream.reachable ? "" : " (" + s.upstream.detail + ")"));
    document.getElementById("loader").textContent = "Loader: " + s.loader.name + " — " + s.loader.reason;
    const rows = s.models.map(m => {
      const tr = document.createElement("tr");
      tr.dataset.model = m.key;
      const state = m.loading ? ["loading", "busy"] : m.loaded ? ["loaded", "ok"] : ["not loaded", "muted"];
      tr.append(text("td", m.key), text("td", state[0], state[1]), text("td", String(m.held)),
        text("td", m.lastLoadMs == null ? "" : Math.round(m.lastLoadMs) + " ms"), text("td", m.lastError ?? "", "bad"));
      return tr;
    });
    document.getElementById("models").replaceChildren(...rows);
    document.getElementById("refreshed").textContent = new Date().toLocaleTimeString();
  } catch (e) {
    document.getElementById("upstream").replaceChildren(text("span", "Cannot read /status: " + e.message, "bad"));
  }
}
refresh();
setInterval(refresh, 2000);
</script>
</body>
</html>
""";
}
