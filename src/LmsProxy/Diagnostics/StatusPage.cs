namespace LmsProxy.Diagnostics;

/// <summary>
/// The page at GET /: renders /status once, then every "status" event of GET /events (server-sent, no polling), to be
/// looked at rather than read. Per host a card with a
/// memory bar (the budget, and each loaded model's estimated share coloured by state); per model a row with its
/// state, a load's progress bar and time left (lms's real percentage, or an estimate from the last load time), and Load / Unload / Pin buttons (POST /models/{key}/...
/// with the action header); the recent loads, unloads and swaps on a timeline. Plain DOM, text set with
/// textContent only, no external assets. The markup and style are here, the page's own script in StatusPage.Script.cs.
/// </summary>
internal static partial class StatusPage
{
    /// <summary>The page, with its script and the keys and activity sections (Sharing/KeysPage.cs, Activity/ActivityPage.cs) in their places.</summary>
    public static readonly string Html = Page.Replace("<!--status-script-->", Script, StringComparison.Ordinal)
        .Replace("<!--activity-->", Sharing.KeysPage.Html + Activity.ActivityPage.Html, StringComparison.Ordinal)
        .Replace("<!--activity-script-->", Sharing.KeysPage.Script + Activity.ActivityPage.Script, StringComparison.Ordinal);

    private const string Page = """
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>LmsProxy</title>
<style>
  :root { --idle: #2f9e5b; --busy: #e8890c; --loading: #3b82f6; --draining: #8b5cf6; --unloading: #9ca3af; --bad: #b42318; }
  body { font: 14px system-ui, sans-serif; margin: 1.5rem 2rem; color: #222; }
  h1 { font-size: 1.4rem; margin: 0 0 .2rem; }
  h2 { font-size: 1.05rem; margin: 1.5rem 0 .4rem; }
  .muted { color: #666; }
  .ok { color: #17803d; font-weight: 600; } .bad { color: var(--bad); font-weight: 600; } .busy { color: #b54708; font-weight: 600; }
  table { border-collapse: collapse; }
  th, td { text-align: left; padding: .3rem .6rem; border-bottom: 1px solid #ddd; vertical-align: middle; }
  th { color: #444; }
  .scroll { overflow-x: auto; }
  .models { font-size: .93rem; }
  .models th, .models td { padding: .3rem .45rem; } .models th { vertical-align: bottom; } #models td { white-space: nowrap; }
  #models td:first-child { white-space: normal; min-width: 10rem; max-width: 16rem; overflow-wrap: anywhere; }
  #models td:nth-child(10), #models td:nth-child(11) { white-space: normal; min-width: 6rem; max-width: 12rem; font-size: .85rem; }
  button { font: inherit; font-size: .8rem; padding: .05rem .4rem; margin-right: .2rem; cursor: pointer; }
  button:disabled { cursor: default; }
  #message { min-height: 1.3rem; }

  .hosts { display: flex; flex-wrap: wrap; gap: 1rem; margin-top: .8rem; }
  .host { flex: 1 1 28rem; max-width: 52rem; border: 1px solid #ddd; border-left: 6px solid var(--idle); border-radius: 6px; padding: .6rem 1rem; }
  .host.down { border-left-color: var(--bad); background: #fff6f5; }
  .host h3 { margin: 0 0 .2rem; font-size: 1rem; }
  .pill { display: inline-block; padding: 0 .55rem; border-radius: 1rem; color: #fff; font-size: .8rem; }
  .pill.healthy { background: var(--idle); } .pill.down { background: var(--bad); }
  .memory { display: flex; height: 1.7rem; margin: .5rem 0 .2rem; background: #eceef1; border-radius: 4px; overflow: hidden; }
  .seg { box-sizing: border-box; min-width: 3px; padding: 0 .35rem; border-right: 2px solid #fff; color: #fff; font-size: .78rem;
         line-height: 1.7rem; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; transition: width .5s; }
  .seg.idle, .swatch.idle { background-color: var(--idle); } .seg.busy, .swatch.busy { background-color: var(--busy); }
  .seg.loading, .swatch.loading { background-color: var(--loading); } .seg.draining, .swatch.draining { background-color: var(--draining); }
  .seg.unloading, .swatch.unloading { background-color: var(--unloading); }
  .seg.pinned { box-shadow: inset 0 -4px 0 #1f2937; }
  .seg.loading, .seg.unloading, .swatch.loading {
    background-image: linear-gradient(45deg, rgba(255,255,255,.3) 25%, transparent 25%, transparent 50%, rgba(255,255,255,.3) 50%, rgba(255,255,255,.3) 75%, transparent 75%);
    background-size: 1rem 1rem; }
  .seg.loading, .progress.unknown > div { animation: stripes 1s linear infinite; }
  @keyframes stripes { from { background-position: 1rem 0; } to { background-position: 0 0; } }
  .legend { font-size: .8rem; color: #555; margin-top: .4rem; }
  .swatch { display: inline-block; width: .8rem; height: .8rem; border-radius: 2px; margin: 0 .25rem 0 .7rem; vertical-align: -1px; }

  .load-progress { display: inline-flex; flex-direction: column; gap: .15rem; font-size: .8rem; }
  .progress { display: block; width: 6rem; height: .7rem; background: #eceef1; border-radius: 3px; overflow: hidden; vertical-align: middle; }
  .progress > div { height: 100%; background-color: var(--loading); transition: width .5s; }
  .progress.unknown > div { width: 100%; background-image: linear-gradient(45deg, rgba(255,255,255,.4) 25%, transparent 25%, transparent 50%, rgba(255,255,255,.4) 50%, rgba(255,255,255,.4) 75%, transparent 75%); background-size: 1rem 1rem; }

  .strip { position: relative; height: 1.4rem; max-width: 70rem; background: #f4f5f7; border-radius: 4px; }
  .mark { position: absolute; top: .2rem; height: 1rem; min-width: 4px; border-radius: 2px; }
  .axis { display: flex; justify-content: space-between; max-width: 70rem; font-size: .75rem; }
  .kind { display: inline-block; min-width: 5.5rem; padding: 0 .45rem; border-radius: 3px; color: #fff; font-size: .8rem; }
  :is(.mark, .kind).load { background: var(--loading); } :is(.mark, .kind).unload { background: #6b7280; } :is(.mark, .kind).swap { background: var(--draining); }
  :is(.mark, .kind).refusal { background: var(--busy); } :is(.mark, .kind).failure { background: var(--bad); } :is(.mark, .kind).dropped { background: #374151; }
  :is(.mark, .kind).found { background: #0d9488; } :is(.mark, .kind).spill { background: #ca8a04; }
  #events td { padding: .2rem .6rem; }
  .timeline { max-height: 24rem; overflow-y: auto; }
</style>
</head>
<body>
<h1>LmsProxy <span id="version" class="muted"></span></h1>
<div id="upstream">Loading status…</div>
<div id="loader" class="muted"></div>
<div id="warnings" class="bad"></div>
<div id="hosts" class="hosts"></div>
<div class="legend">Memory bar: <span class="swatch idle"></span>idle <span class="swatch busy"></span>busy <span class="swatch loading"></span>loading
  <span class="swatch draining"></span>draining <span class="swatch unloading"></span>unloading; a dark underline marks a pinned model.</div>

<h2>Models</h2>
<div id="message" role="status"></div>
<div class="scroll">
<table class="models">
  <thead><tr><th>Model</th><th>State</th><th>Held</th><th>Last load</th><th>In flight</th><th>Pinned</th><th>Last used</th>
    <th>Est. memory</th><th>Hosts</th><th>Waiting for</th><th>Last error</th><th>Actions</th></tr></thead>
  <tbody id="models"></tbody>
</table>
</div>

<div id="queues"></div>

<h2>Loads, unloads and swaps</h2>
<div id="totals" class="muted"></div>
<div id="strip" class="strip"></div>
<div class="axis muted"><span id="strip-start"></span><span>now</span></div>
<div class="timeline">
<table>
  <thead><tr><th>When</th><th>What</th><th>Host</th><th>Model</th><th>Why</th><th>Took</th></tr></thead>
  <tbody id="events"></tbody>
</table>
</div>
<!--activity-->
<p class="muted">Refreshed <span id="refreshed">never</span>. Raw data: <a href="status">/status</a>, <a href="metrics">/metrics</a>.</p>
<!--status-script-->
<!--activity-script-->
</body>
</html>
""";
}
