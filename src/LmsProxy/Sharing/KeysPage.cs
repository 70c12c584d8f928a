namespace LmsProxy.Sharing;

/// <summary>
/// The status page's keys section: per key, what it has in flight and queued now and what it used today against its
/// limits, from the keys list of GET /status (polled with the rest of the page). Hidden when no key is configured.
/// Text set with textContent only.
/// </summary>
internal static class KeysPage
{
    public const string Html = """
<section id="keys-section" hidden>
<h2>Keys</h2>
<div class="scroll">
<table class="models">
  <thead><tr><th>Key</th><th>Role</th><th>Priority</th><th>In flight</th><th>Queued</th><th>Requests (last min)</th><th>Tokens today</th><th>GPU today</th><th>Models</th></tr></thead>
  <tbody id="keys"></tbody>
</table>
</div>
</section>
""";

    public const string Script = """
<script>
(() => {
  const cell = (value, cls) => { const td = document.createElement("td"); td.textContent = value ?? ""; if (cls) td.className = cls; return td; };
  const against = (used, limit, unit) => used.toLocaleString() + (unit ?? "") + (limit ? " / " + limit.toLocaleString() + (unit ?? "") : "");
  const near = (used, limit) => limit && used >= limit ? "bad" : limit && used >= 0.8 * limit ? "busy" : null;
  async function refreshKeys() {
    try {
      const response = await fetch("status", { cache: "no-store" });
      if (!response.ok) return;
      const keys = (await response.json()).keys ?? [];
      document.getElementById("keys-section").hidden = keys.length === 0;
      document.getElementById("keys").replaceChildren(...keys.map(k => {
        const tr = document.createElement("tr");
        tr.append(cell(k.name), cell(k.role), cell(k.priority),
          cell(against(k.inFlight, k.maxConcurrent)), cell(k.queued ? String(k.queued) : "", k.queued ? "busy" : null),
          cell(against(k.lastMinuteRequests, k.requestsPerMinute), near(k.lastMinuteRequests, k.requestsPerMinute)),
          cell(against(k.tokensToday, k.tokensPerDay), near(k.tokensToday, k.tokensPerDay)),
          cell(against(k.gpuSecondsToday, k.gpuSecondsPerDay, " s"), near(k.gpuSecondsToday, k.gpuSecondsPerDay)),
          cell(k.models.length ? k.models.join(", ") : "all"));
        return tr;
      }));
    } catch { /* the main refresh reports an unreachable proxy */ }
  }
  refreshKeys();
  setInterval(refreshKeys, 2000);
})();
</script>
""";
}
