// The comparison page: plain DOM + fetch against this server's own API; no framework, no build step.
// Every value from the API is put into the page with textContent (never innerHTML).
// The view lives in the URL: ?item_id= (or user_id=) &model= &k= [&compare=models&metric=] and #tab, so a link reopens it
// (#experiments/NAME: that experiment's report). The admin token of the reports never goes into the URL.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const SVG = "http://www.w3.org/2000/svg";
  const METRIC_INFO = {
    dot: "inner product of the raw embeddings: long (popular) vectors win",
    cosine: "cosine of the raw embeddings: moves with the arbitrary D of the denoising objective",
    projected: "cosine in the original space (rows / columns of X A Bᵀ): the same for every D",
    "projected-centered": "Pearson correlation of the columns (rows) of X̂ = P Qᵀ: each one's mean removed, then cosine; "
      + "the same for every D",
    whitened: "cosine after whitening each side (every latent direction at unit variance): the same for every D, "
      + "all directions weigh alike",
  };
  // metrics whose lists are the same for every D (the rest move with the arbitrary rescaling of the embeddings)
  const GAUGE_FREE = new Set(["projected", "projected-centered", "whitened"]);
  const MODEL_INFO = {
    "denoising-symmetric": "objective 1, A = B = V diag(f)^½",
    "denoising-item-orthonormal": "objective 1, B = V (item cosine = identity at full rank)",
    "denoising-user-orthonormal": "objective 1, A = V",
    "denoising-sigma-matched": "objective 1, D mimics weight decay",
    "weight-decay": "objective 2 (usual MF), unique up to rotation",
  };
  const SOURCE_INFO = {
    "closed-form": "fitted in closed form from the SVD (the paper's objectives)",
    implicit: "trained by the implicit library",
    imported: "factors imported from files",
  };
  const TABS = ["compare", "models", "evaluation", "summary", "experiments"];
  const state = { side: "items", mode: "metrics", model: null, metric: "cosine", k: 10, id: null, models: [] };
  let catalog = null;  // the /models document of the served version
  let suggestTimer = null, suggestSeq = 0, compareSeq = 0, activeSuggestion = -1, shownSearch = null;
  const loaded = { models: false, evaluation: false, summary: false, experiments: false };
  const gauges = new Map();  // model -> Promise of its /models/{model}/gauge document, or null when it has none
  let summaryDoc = null;  // Promise of /compare-metrics/summary (read by the Models tab and the Summary tab)

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) if (child != null) node.append(child);
    return node;
  }
  function svg(tag, attrs = {}, text = null) {
    const node = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
    if (text !== null) node.textContent = text;
    return node;
  }
  const fmt = (v, digits = 3) => (v === null || v === undefined ? "n/a" : Number(v).toFixed(digits));
  const dash = (v, digits = 3) => (v === null || v === undefined ? "–" : Number(v).toFixed(digits));
  const pct = (v) => (v === null || v === undefined ? "n/a" : `${Math.round(v * 100)}%`);
  const short = (name) => name.replace(/^denoising-/, "");  // model names: the D-variant is enough in tight places

  function chip(text) {
    const c = el("span", { class: "chip", text });
    let h = 0;
    for (const ch of text) h = (h * 31 + ch.codePointAt(0)) % 360;
    c.style.background = `hsl(${h} 70% 92%)`;
    c.style.borderColor = `hsl(${h} 45% 78%)`;
    return c;
  }

  function swatch(metric) { return el("span", { class: `swatch m-${metric}` }); }

  async function api(path, headers = {}) {
    const r = await fetch(path, { headers: { Accept: "application/json", ...headers } });
    const body = await r.json().catch(() => ({}));
    if (!r.ok) {
      const e = new Error(body.detail || `${r.status} ${r.statusText}`);
      e.status = r.status;
      throw e;
    }
    return body;
  }

  function summaryOf() {
    if (!summaryDoc) summaryDoc = api("/compare-metrics/summary");
    return summaryDoc;
  }

  function gaugeOf(model) {
    if (!gauges.has(model)) {
      const listed = catalog && catalog.models[model] && catalog.models[model].gauge;
      gauges.set(model, listed ? api(listed).catch(() => null) : Promise.resolve(null));
    }
    return gauges.get(model);
  }

  // ------------------------------------------------------------------ setup

  async function init() {
    try {
      catalog = await api("/models");
    } catch (e) {
      $("version").textContent = "no artifact version loaded";
      $("status").textContent = `The API is not ready: ${e.message}`;
      $("status").className = "error";
      return;
    }
    $("version").textContent = `artifact ${catalog.artifact_version} · ${describeDataset(catalog)}`;
    state.models = Object.keys(catalog.models);
    for (const [name, info] of Object.entries(catalog.models)) {
      $("model").append(el("option", { value: name, text: `${name} · ${info.source || "closed-form"}` }));
    }
    for (const m of catalog.metrics) $("metric").append(el("option", { value: m, text: m }));
    const byMetric = $("mode").querySelector("button[data-mode='metrics']");
    byMetric.textContent = `${catalog.metrics.length} metrics of one model`;  // the version's count (older ones serve fewer)
    byMetric.title = `the lists of ${listing(catalog.metrics)} side by side`;
    readUrl();
    wire();
    syncControls();
    route();
    if (state.id) loadComparison("replace");
    else openPopular();
  }

  function describeDataset(models) {
    const c = models.counts, d = models.dataset || {};
    return `${d.kind || "dataset"}: ${c.users.toLocaleString()} users × ${c.items.toLocaleString()} items, k = ${c.k}`;
  }

  function readUrl() {
    const p = new URLSearchParams(location.search);
    state.side = "items";
    state.id = null;
    if (p.get("user_id")) { state.side = "users"; state.id = p.get("user_id"); }
    else if (p.get("item_id")) { state.side = "items"; state.id = p.get("item_id"); }
    const compare = p.get("compare");
    if (compare === "models" || compare === "metrics") state.mode = compare;
    else state.mode = p.get("models") !== null || p.get("metric") ? "models" : "metrics";  // links from before compare=
    state.model = p.get("model") || catalog.defaults.model;
    state.metric = p.get("metric") || state.metric;
    const k = Number(p.get("k"));
    state.k = Number.isInteger(k) && k > 0 ? k : catalog.defaults.k;
    syncSelects();
  }

  function syncSelects() {
    if (![...$("k").options].some((o) => o.value === String(state.k))) $("k").append(el("option", { text: String(state.k) }));
    $("model").value = state.model;
    $("metric").value = state.metric;
    $("k").value = String(state.k);
  }

  function currentQuery() {
    const p = new URLSearchParams();
    if (state.id) p.set(state.side === "items" ? "item_id" : "user_id", state.id);
    p.set("model", state.model);
    if (state.mode === "models") { p.set("compare", "models"); p.set("metric", state.metric); }
    p.set("k", String(state.k));
    return `?${p}`;
  }

  // push: a new query item or user (its own history entry); otherwise the entry is replaced.
  function writeUrl(push) {
    const search = currentQuery();
    shownSearch = search;
    if (search === location.search) return;
    const url = `${location.pathname}${search}${location.hash}`;
    if (push) history.pushState(null, "", url); else history.replaceState(null, "", url);
  }

  function wire() {
    for (const b of $("side").querySelectorAll("button")) b.addEventListener("click", () => {
      if (b.dataset.side === state.side) return;
      state.side = b.dataset.side; state.id = null; $("search").value = ""; syncControls();
      $("result").classList.add("hidden");
      $("status").className = "hint";
      $("status").textContent = state.side === "items" ? "Search for an item above, then pick it." : "Type a user id and press Enter.";
      writeUrl(false);
    });
    for (const b of $("mode").querySelectorAll("button")) b.addEventListener("click", () => {
      state.mode = b.dataset.mode; syncControls(); if (state.id) loadComparison("replace"); else writeUrl(false);
    });
    const onChange = () => { if (state.id) loadComparison("replace"); else writeUrl(false); };
    $("model").addEventListener("change", () => { state.model = $("model").value; onChange(); });
    $("metric").addEventListener("change", () => { state.metric = $("metric").value; onChange(); });
    $("k").addEventListener("change", () => { state.k = Number($("k").value); onChange(); });
    const input = $("search");
    input.addEventListener("input", () => {
      if (state.side !== "items") return;
      clearTimeout(suggestTimer);
      suggestTimer = setTimeout(suggest, 150);
    });
    input.addEventListener("keydown", onSearchKey);
    input.addEventListener("blur", () => setTimeout(hideSuggestions, 150));
    $("controls").addEventListener("submit", (e) => e.preventDefault());
    window.addEventListener("hashchange", route);
    window.addEventListener("popstate", () => {  // back / forward: a fragment change only switches the tab
      route();
      if (location.search === shownSearch) return;
      readUrl();
      syncControls();
      $("search").value = "";
      if (state.id) loadComparison(null);
      else { $("result").classList.add("hidden"); openPopular(); }
    });
  }

  function syncControls() {
    for (const b of $("side").querySelectorAll("button")) b.classList.toggle("on", b.dataset.side === state.side);
    for (const b of $("mode").querySelectorAll("button")) b.classList.toggle("on", b.dataset.mode === state.mode);
    $("model-field").classList.toggle("hidden", state.mode !== "metrics");
    $("metric-field").classList.toggle("hidden", state.mode !== "models");
    $("search-label").textContent = state.side === "items" ? "Item title or id" : "User id (press Enter)";
    $("search").placeholder = state.side === "items" ? "Type a title or an id…" : "e.g. u7";
  }

  // #tab, or #experiments/NAME (the name URI-encoded)
  function route() {
    const [head, ...rest] = location.hash.slice(1).split("/");
    const tab = TABS.includes(head) ? head : "compare";
    for (const t of TABS) {
      $(`view-${t}`).classList.toggle("hidden", t !== tab);
      $(`tab-${t}`).classList.toggle("active", t === tab);
    }
    if (tab === "models" && !loaded.models) { loaded.models = true; loadModels(); }
    if (tab === "evaluation" && !loaded.evaluation) { loaded.evaluation = true; loadEvaluation(); }
    if (tab === "summary" && !loaded.summary) { loaded.summary = true; loadSummary(); loadFigures(); }
    if (tab === "experiments") openExperiments(rest.length ? safeDecode(rest.join("/")) : null);
  }

  function safeDecode(text) {
    try { return decodeURIComponent(text); } catch (e) { return text; }
  }

  async function openPopular() {
    $("status").className = "hint";
    $("status").textContent = "Opening a popular item…";
    let best = null;
    try { best = (await api("/items/popular?limit=1")).items[0] || null; } catch (e) { best = null; }
    if (state.id || state.side !== "items") return;  // the reader chose something meanwhile
    if (!best) { $("status").textContent = "Search for an item above (or switch to Users and type a user id), then pick it."; return; }
    state.id = best.item_id;
    loadComparison("replace",
      `The most popular item to start with (${best.popularity.toLocaleString()} users). Search for any other above, or switch to Users.`);
  }

  // ------------------------------------------------------------------ search box

  async function suggest() {
    const q = $("search").value.trim();
    const seq = ++suggestSeq;
    if (!q) { hideSuggestions(); return; }
    let found;
    try { found = await api(`/items/search?${new URLSearchParams({ q, limit: "12" })}`); }
    catch (e) { return; }
    if (seq !== suggestSeq) return; // a newer keystroke won
    const list = $("suggestions");
    list.replaceChildren();
    activeSuggestion = -1;
    if (!found.items.length) list.append(el("li", { class: "none", text: "no item matches" }));
    for (const item of found.items) {
      const li = el("li", { role: "option", "data-id": item.item_id },
        el("span", { class: "stitle", text: item.title || item.item_id }),
        el("span", { class: "sid", text: item.item_id }),
        el("span", { class: "pop", text: `${item.popularity} users` }));
      li.addEventListener("mousedown", (e) => { e.preventDefault(); pick(item.item_id, item.title); });
      list.append(li);
    }
    list.classList.remove("hidden");
  }

  function hideSuggestions() { $("suggestions").classList.add("hidden"); activeSuggestion = -1; }

  function onSearchKey(e) {
    const items = [...$("suggestions").querySelectorAll("li[data-id]")];
    if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      if (!items.length) return;
      e.preventDefault();
      activeSuggestion = (activeSuggestion + (e.key === "ArrowDown" ? 1 : -1) + items.length) % items.length;
      items.forEach((li, i) => li.classList.toggle("active", i === activeSuggestion));
    } else if (e.key === "Enter") {
      e.preventDefault();
      const value = $("search").value.trim();
      if (state.side === "users") { if (value) pick(value, null); return; }
      const li = items[Math.max(activeSuggestion, 0)];
      if (li) pick(li.dataset.id, li.querySelector(".stitle").textContent);
      else if (value) pick(value, null);
    } else if (e.key === "Escape") hideSuggestions();
  }

  function pick(id, title) {
    state.id = id;
    $("search").value = title || id;
    hideSuggestions();
    loadComparison("push");
  }

  // ------------------------------------------------------------------ one query

  // how: "push" (a new item or user: its own history entry), "replace" (the same entry), null (the URL is already right).
  async function loadComparison(how = "replace", note = null) {
    const p = new URLSearchParams();
    p.set(state.side === "items" ? "item_id" : "user_id", state.id);
    if (state.mode === "models") { for (const m of state.models) p.append("models", m); p.set("metric", state.metric); }
    else p.set("model", state.model);
    p.set("k", String(state.k));
    const seq = ++compareSeq;
    $("status").className = "hint";
    $("status").textContent = "Comparing…";
    const probed = state.mode === "models" ? state.models : [state.model];
    let body, probes;
    try { [body, probes] = await Promise.all([api(`/compare-metrics?${p}`), Promise.all(probed.map(gaugeOf))]); }
    catch (e) {
      if (seq !== compareSeq) return;
      $("status").className = "error"; $("status").textContent = e.message; $("result").classList.add("hidden"); return;
    }
    if (seq !== compareSeq) return;
    if (how) writeUrl(how === "push"); else shownSearch = location.search;
    $("status").textContent = "";
    render(body, new Map(probed.map((m, i) => [m, probes[i]])));
    if (note) $("query").append(el("span", { class: "note", id: "opened-note", text: note }));
  }

  function render(body, probes) {
    renderQuery(body);
    const counts = new Map();
    const key = body.side === "items" ? "item_id" : "user_id";
    for (const l of body.lists) for (const n of l.neighbors) counts.set(n[key], (counts.get(n[key]) || 0) + 1);
    const queryCats = new Set(body.query.categories || []);
    const cols = $("columns");
    cols.replaceChildren();
    cols.className = `columns n${body.lists.length}`;
    for (const l of body.lists) {
      const info = body.compare === "metrics" ? METRIC_INFO[l.metric] : `${l.metric} · ${modelLine(l.model)}`;
      const stats = el("div", { class: "stats" },
        el("span", { class: "stat", title: "median popularity of the neighbours / catalogue median" },
          "popularity ", el("b", { text: l.popularity_ratio === null ? "n/a" : `×${fmt(l.popularity_ratio, 2)}` }), " median"));
      if (l.category_share !== null) {
        stats.append(el("span", { class: "stat", title: "neighbours sharing a category with the query" },
          "same category ", el("b", { text: pct(l.category_share) })));
      }
      const probe = probes.get(body.compare === "metrics" ? body.model : l.model);
      const gauge = probe && probe.sides[body.side] && probe.sides[body.side][l.metric];
      if (gauge) {
        stats.append(el("span", { class: "stat", title: `gauge probe: mean Jaccard@${probe.k} of such lists under ${probe.transforms} `
          + "random diagonal rescalings D that leave every prediction unchanged (1 = not arbitrary; see the Models tab)" },
        "under random D ", el("b", { text: fmt(gauge.jaccard_mean, 2) })));
      }
      const ol = el("ol", { class: "neighbours" });
      for (const n of l.neighbors) {
        const id = n[key];
        const below = el("div", { class: "below" }, el("span", { text: id }));
        for (const c of n.categories || []) below.append(chip(c));
        const li = el("li", { "data-id": id },
          el("span", { class: "title", text: n.title || id, title: n.title || id }),
          el("span", { class: "score", text: fmt(n.score, 3) }), below);
        if (counts.get(id) === body.lists.length) li.classList.add("shared-all");
        if ((n.categories || []).some((c) => queryCats.has(c))) {
          li.classList.add("same-cat");
          below.prepend(el("span", { class: "tick", text: "✓", title: "shares a category with the query" }));
        }
        li.addEventListener("mouseenter", () => highlight(id, true));
        li.addEventListener("mouseleave", () => highlight(id, false));
        ol.append(li);
      }
      if (!l.neighbors.length) ol.append(el("li", { text: "no neighbours" }));
      cols.append(el("div", { class: "col", "data-list": l.name, "data-metric": l.metric },
        el("header", {}, el("h3", { text: l.name }), el("div", { class: "what", text: info }), stats), ol));
    }
    renderPairs(body);
    $("result").classList.remove("hidden");
  }

  function renderQuery(body) {
    const q = body.query, box = $("query");
    box.replaceChildren();
    const metrics = body.lists.map((l) => l.metric);
    const what = body.compare === "metrics"
      ? `${listing(metrics)} of model ${body.model}`
      : `${body.metric} across ${body.models.length} models`;
    if (body.side === "items") {
      box.append(el("h2", { text: q.title || q.item_id }), el("span", { class: "meta", text: `item ${q.item_id}` }));
      if ((q.categories || []).length) box.append(el("div", { class: "cats" }, ...q.categories.map(chip)));
    } else {
      box.append(el("h2", { text: `user ${q.user_id}` }));
    }
    const pop = body.popularity;
    box.append(
      el("span", { class: "meta", text: `${pop.query} ${pop.definition} (catalogue median ${pop.catalogue_median})` }),
      el("span", { class: "meta", text: `Top ${body.k} neighbours under ${what}.` }),
      el("span", { class: "hint", text: body.compare === "metrics"
        ? metricsHint(metrics)
        : "Every denoising variant makes the same predictions: lists that differ between them show how arbitrary that metric is." }));
  }

  // "a", "a and b", "a, b and c"
  function listing(names) {
    return names.length < 2 ? names.join("") : `${names.slice(0, -1).join(", ")} and ${names[names.length - 1]}`;
  }

  function metricsHint(metrics) {
    const parts = [];
    if (metrics.includes("dot")) parts.push("dot product favours popular items");
    if (metrics.includes("cosine")) parts.push("cosine depends on an arbitrary rescaling D of the embeddings");
    const free = metrics.filter((m) => GAUGE_FREE.has(m));
    if (free.length) parts.push(`${listing(free)} ${free.length > 1 ? "do" : "does"} not`);
    const text = parts.join("; ");
    return text ? `${text[0].toUpperCase()}${text.slice(1)}.` : "";
  }

  function bar(v, metric = null) {
    const b = el("span", { class: metric ? `bar m-${metric}` : "bar" });
    b.style.width = `${Math.max(0, Math.min(1, v || 0)) * 50}px`;
    return b;
  }

  function renderPairs(body) {
    const t = $("pairs");
    t.replaceChildren();
    const tau = body.weighted_tau;
    t.append(el("tr", {}, el("th", { text: "pair" }), el("th", { text: `Jaccard@${body.k}` }),
      el("th", { text: `RBO (p = ${body.rbo_p})` }), el("th", { text: "weighted τ" })));
    for (const p of body.pairs) {
      t.append(el("tr", { "data-pair": `${p.a}~${p.b}` }, el("td", { text: `${short(p.a)} ~ ${short(p.b)}` }),
        el("td", {}, fmt(p.jaccard), bar(p.jaccard)), el("td", {}, fmt(p.rbo), bar(p.rbo)),
        el("td", {}, fmt(p.weighted_tau), bar(p.weighted_tau))));
    }
    const rows = tau.rows === 0 ? "weighted τ skipped"
      : `weighted τ over ${tau.rows.toLocaleString()} of ${tau.catalogue_rows.toLocaleString()} rows${tau.sampled ? " (seeded sample)" : ""}`;
    const key = el("span", { class: "key" });
    key.style.background = "var(--good)";
    $("pairs-legend").replaceChildren(
      `Jaccard: share of items the two top-${body.k} lists have in common. RBO: overlap weighted to the top ranks. `
      + `${rows}: rank agreement over the catalogue, weighted to the top, so lists sharing nothing still get a value.`,
      el("br"), key, "in every list · ", el("span", { class: "tick", text: "✓" }),
      " same category as the query · hover a neighbour to find it in the other columns");
  }

  function highlight(id, on) {
    for (const li of $("columns").querySelectorAll("li[data-id]")) if (li.dataset.id === id) li.classList.toggle("hl", on);
  }

  // ------------------------------------------------------------------ models and their gauge probe

  function modelLine(name) {
    const info = catalog.models[name] || {};
    if (MODEL_INFO[name]) return MODEL_INFO[name];
    if (info.source === "implicit") return `${String(info.algorithm || name).toUpperCase()} (implicit), ${info.factors ?? info.k} factors`;
    if (info.source === "imported") return `imported ${info.format || ""} factors, k = ${info.k}`;
    return info.source || "";
  }

  function modelDetails(name, info) {
    const parts = [];
    const source = info.source || "closed-form";
    if (source === "closed-form") {
      if (!MODEL_INFO[name]) {  // MODEL_INFO already names the objective and the D-variant of the paper's five models
        parts.push(info.objective === "weight-decay" ? "objective 2 (weight decay)" : `objective 1 (${info.objective || "denoising"})`);
        if (info.d_variant) parts.push(`D-variant ${info.d_variant}`);
      }
      if (info.lambda !== undefined && info.lambda !== null) parts.push(`λ = ${Number(info.lambda).toLocaleString()}`);
      if (info.surviving_dims !== undefined) parts.push(`${info.surviving_dims} of ${info.k} dimensions survive`);
    } else if (source === "implicit") {
      parts.push(`${info.algorithm} from the ${info.library || "implicit"} library`);
      for (const [key, label] of [["factors", "factors"], ["regularization", "regularization"], ["alpha", "alpha"],
        ["learning_rate", "learning rate"], ["iterations", "iterations"]]) {
        if (info[key] !== undefined && info[key] !== null) parts.push(`${label} ${info[key]}`);
      }
    } else if (source === "imported") {
      parts.push(`${info.format || "factors"} from ${info.path}`, `k = ${info.k}`);
      if (info.items_without_factors) parts.push(`${info.items_without_factors} items without factors (zero rows)`);
    }
    return parts.join(" · ");
  }

  async function loadModels() {
    loadHealth();
    const names = Object.keys(catalog.models);
    const probes = await Promise.all(names.map(gaugeOf));
    const any = probes.find((p) => p);
    const status = $("models-status");
    if (any) {
      const q = Object.entries(any.queries || {}).map(([side, n]) => `${n.toLocaleString()} ${side}`).join(" and ");
      status.textContent = `${names.length} models. Each probe: ${any.transforms} random D (entries log-uniform in `
        + `[${(any.range || []).join(", ")}]), top-${any.k} lists of ${q} (a seeded sample), compared with the served lists.`;
    } else {
      status.textContent = `${names.length} models. This version has no gauge probe (built with --gauge-transforms 0).`;
    }
    const out = $("models-list");
    out.replaceChildren(...names.map((name, i) => modelCard(name, catalog.models[name], probes[i])));
  }

  function modelCard(name, info, probe) {
    const source = info.source || "closed-form";
    const card = el("div", { class: "card model-card", "data-model": name },
      el("header", {}, el("h3", { text: name }),
        el("span", { class: `source src-${source}`, text: source, title: SOURCE_INFO[source] || source })),
      el("p", { class: "what", text: [MODEL_INFO[name], modelDetails(name, info)].filter(Boolean).join(" · ") }),
      el("p", { class: "users" }, "user vectors: ", el("b", { class: "users-origin", text: info.users || "–" })));
    if (probe) card.append(el("div", { class: "scroll" }, gaugeTable(probe)));
    else {
      card.append(el("p", { class: "noprobe", text: info.gauge
        ? "no probe: the gauge endpoint has none for this model"
        : "no probe: this version was built without the gauge probe (--gauge-transforms 0)" }));
    }
    const open = el("button", { type: "button", class: "open", text: "Compare its lists →" });
    open.addEventListener("click", () => {
      state.model = name; state.mode = "metrics";
      syncControls(); syncSelects();
      location.hash = "#compare";
      if (state.id) loadComparison("replace");
    });
    card.append(open);
    return card;
  }

  function gaugeTable(probe) {
    const sides = Object.keys(probe.sides);
    const metrics = catalog.metrics.filter((m) => sides.some((s) => probe.sides[s][m]));
    const t = el("table", { class: "grid gauge" });
    const sideName = (s) => (s === "items" ? "item → item lists" : s === "users" ? "user → user lists" : s);
    t.append(el("tr", {}, el("th", {}), ...sides.map((s) => el("th", { class: "group sep", colspan: "3", text: sideName(s) }))));
    t.append(el("tr", {}, el("th", { text: "metric" }), ...sides.flatMap(() => [
      el("th", { class: "sep", text: `Jaccard@${probe.k}`, title: "mean over queries × transforms" }),
      el("th", { text: "5th pct", title: "5th percentile of the Jaccard: the worst lists" }),
      el("th", { text: "RBO", title: "rank-biased overlap, weighted to the top ranks" })])));
    for (const m of metrics) {
      const cells = sides.flatMap((s) => {
        const f = probe.sides[s][m] || {};
        const cell = (fig, cls) => el("td", { class: cls, "data-side": s, "data-figure": fig }, dash(f[fig]));
        const first = cell("jaccard_mean", "sep");
        first.append(bar(f.jaccard_mean, m));
        return [first, cell("jaccard_p05", ""), cell("rbo_mean", "")];
      });
      t.append(el("tr", { "data-metric": m }, el("td", {}, swatch(m), m), ...cells));
    }
    return t;
  }

  // ------------------------------------------------------------------ embedding health (summary.json "embeddings")

  const HEALTH = [
    { key: "anisotropy", label: "anisotropy", title: "mean cosine of random pairs of rows" },
    { key: "effective_rank", label: "effective rank", title: "exp of the entropy of the singular spectrum, of k" },
    { key: "norm_popularity_spearman", label: "norm ~ popularity ρ",
      title: "Spearman correlation of the row norms with popularity" },
  ];
  const HEALTH_SIDES = { items: "item vectors Q", users: "user vectors P" };

  // one figure as the table shows it; effective rank with the k it is out of
  function healthText(key, h) {
    const v = h ? h[key] : null;
    if (key === "effective_rank" && v !== null && v !== undefined && h.dims !== null && h.dims !== undefined) {
      return `${dash(v, 2)} of ${h.dims}`;
    }
    if (key === "zero_rows") return v === null || v === undefined ? "–" : Number(v).toLocaleString();
    return dash(v, key === "effective_rank" ? 2 : 3);
  }

  async function loadHealth() {
    const card = $("health-card"), status = $("health-status");
    card.classList.remove("hidden");
    const noSummary = () => {
      status.className = "nohealth";
      status.textContent = `No embedding health: version ${catalog.artifact_version} has no summary (built with `
        + "--no-diagnostics). A build without that flag writes these figures into its summary.";
    };
    if ((catalog.params || {}).diagnostics === false) { noSummary(); return; }  // no request that can only be a 404
    let body;
    try { body = await summaryOf(); }
    catch (e) {
      if (e.status === 404) noSummary();
      else { status.className = "error"; status.textContent = `No embedding health: ${e.message}`; }
      return;
    }
    const emb = (body.summary || {}).embeddings;
    if (!emb || typeof emb !== "object" || !Object.values(emb).some((m) => m && typeof m === "object")) {
      status.className = "nohealth";
      status.textContent = `No embedding health: the summary of version ${catalog.artifact_version} predates these figures. `
        + "Rebuild it (the same flags) to see them.";
      return;
    }
    status.className = "hint";
    status.textContent = "";
    const point = (term, text) => el("li", {}, el("b", { text: term }), text);
    $("health-how").replaceChildren("Three figures of each model's embeddings as stored, per side. How to read them:",
      el("ul", { class: "howto" },
        point("anisotropy", " high (near 1): the vectors all point the same way, cosine hardly discriminates;"),
        point("effective rank", " low (of k): the vectors use only a few latent directions;"),
        point("norm ~ popularity", " positive: the lengths carry popularity, so dot favours popular items (cosine drops them);"),
        point("all three", " describe the stored vectors, not the predictions: they move with D like cosine, so where the "
          + "denoising D-variants (identical predictions) differ here, the difference is arbitrary.")));
    renderHealth(emb, (body.summary || {}).embeddings_definitions || {});
  }

  function renderHealth(emb, defs) {
    const known = Object.keys(emb).filter((m) => emb[m] && typeof emb[m] === "object");
    const listed = Object.keys(catalog.models).filter((m) => known.includes(m));
    const models = [...listed, ...known.filter((m) => !listed.includes(m))];  // the catalogue's order first
    const sides = Object.keys(HEALTH_SIDES).filter((s) => models.some((m) => emb[m][s]));
    // zero rows only where some model has them (imported factors with unmatched items, collapsed dimensions)
    const figures = (s) => (models.some((m) => emb[m][s] && emb[m][s].zero_rows)
      ? [...HEALTH, { key: "zero_rows", label: "zero rows", title: "rows with no direction (left out of the anisotropy)" }]
      : HEALTH);
    const t = $("health");
    t.replaceChildren();
    t.append(el("tr", {}, el("th", {}),
      ...sides.map((s) => el("th", { class: "group sep", colspan: String(figures(s).length), text: HEALTH_SIDES[s] }))));
    t.append(el("tr", {}, el("th", { text: "model" }), ...sides.flatMap((s) => figures(s).map((f, i) =>
      el("th", { class: i ? "" : "sep", text: f.label, title: defs[f.key] || f.title })))));
    for (const model of models) {
      const cells = sides.flatMap((s) => figures(s).map((f, i) => {
        const h = emb[model][s];
        const td = el("td", { class: i ? "" : "sep", "data-side": s, "data-figure": f.key, text: healthText(f.key, h) });
        if (f.key === "anisotropy" && h && h.anisotropy !== null && h.anisotropy !== undefined) td.append(bar(h.anisotropy));
        return td;
      }));
      t.append(el("tr", { "data-model": model }, el("td", { text: model }), ...cells));
    }
    t.classList.remove("hidden");
    const labels = { ...Object.fromEntries(HEALTH.map((f) => [f.key, f.label])), gauge: "gauge (D)" };
    $("health-definitions").replaceChildren(...Object.entries(defs).flatMap(([key, text]) => [
      el("dt", { text: labels[key] || key }), el("dd", { text })]));
  }

  // ------------------------------------------------------------------ held-out evaluation

  const MEASURES = [
    { key: "recall_at_20", label: "Recall@20", task: "user → item", best: "max" },
    { key: "ndcg_at_100", label: "nDCG@100", task: "user → item", best: "max" },
    { key: "category_precision_at_10", label: "Category precision@10", task: "item → item", best: "max",
      missing: "the dataset has no categories" },
    { key: "popularity_ratio", label: "Popularity ratio", task: "item → item", best: "one" },
    { key: "coverage_at_10", label: "Coverage@10", task: "item → item", best: "max" },
    { key: "spearman_truth", label: "Spearman vs truth", task: "item → item", best: "max",
      missing: "only a simulation has true similarities" },
  ];
  const isBaseline = (r) => r.metric === null || r.source === "baseline";

  async function loadEvaluation() {
    if (!catalog.evaluation) { explainNoEvaluation(); return; }
    let body;
    try { body = await api(catalog.evaluation); }
    catch (e) {
      if (e.status === 404) explainNoEvaluation();
      else { $("evaluation-status").className = "error"; $("evaluation-status").textContent = `No evaluation: ${e.message}`; }
      return;
    }
    $("evaluation-status").classList.add("hidden");
    renderEvaluation(body);
    $("evaluation").classList.remove("hidden");
  }

  function explainNoEvaluation() {
    const kind = (catalog.dataset || {}).kind || "…";
    const box = $("evaluation-status");
    box.className = "card noeval";
    box.replaceChildren(
      el("h2", { class: "section", text: "No held-out evaluation in this version" }),
      el("p", { text: `Artifact version ${catalog.artifact_version} was built without --evaluate, so there is no `
        + "ranking of the models and metrics on held-out data to show." }),
      el("p", { text: "Build a version with it (the same flags as before, plus --evaluate): every model is refitted on a seeded "
        + "per-user split and each model × metric is scored on the held-out interactions (evaluation.json); what is served "
        + "does not change." }),
      el("pre", {}, el("code", { text: `python -m models.build --dataset ${kind} --out ARTIFACTS_DIR … --evaluate` })),
      el("p", { class: "hint", text: "The server picks the new version up by itself; reload this page then." }));
  }

  function renderEvaluation(body) {
    const s = body.split || {};
    const n = (v) => (typeof v === "number" ? v.toLocaleString() : "?");
    $("evaluation-how").textContent = `${s.method || "held-out split"}: ${pct(s.fraction)} of each user's interactions held out `
      + `(users with at least ${n(s.min_interactions)}; seed ${n(s.seed)}), ${n(s.eval_users)} users evaluated on `
      + `${n(s.test_interactions)} held-out interactions after refitting on ${n(s.train_interactions)}. `
      + "What is served is fitted on all the data. Bars: one per metric, grouped by model; lines: the baselines.";
    const defs = body.definitions || {};
    const rows = body.results.filter((r) => !isBaseline(r));
    const baselines = body.results.filter(isBaseline);
    const metrics = catalog.metrics.filter((m) => rows.some((r) => r.metric === m));
    const legend = $("chart-legend");
    legend.replaceChildren(...metrics.map((m) => el("span", { class: "key" }, swatch(m), m)),
      ...baselines.map((b) => el("span", { class: "key" }, el("span", { class: `refkey ref-${b.model}` }), `${b.model} (baseline)`)));
    const charts = $("eval-charts");
    charts.replaceChildren();
    const absent = [];
    for (const m of MEASURES) {
      if (!body.results.some((r) => r[m.key] !== null && r[m.key] !== undefined)) { absent.push(`${m.label}: ${m.missing || "not measured"}`); continue; }
      charts.append(chartFor(m, rows, baselines, metrics, defs[m.key] || ""));
    }
    if (absent.length) charts.append(el("p", { class: "hint absent", text: `Not in this evaluation: ${absent.join("; ")}.` }));
    renderEvaluationTable(body.results, defs);
  }

  function bestValues(rows) {
    const best = {};
    for (const m of MEASURES) {
      const shown = rows.map((r) => r[m.key]).filter((v) => v !== null && v !== undefined).map((v) => Number(Number(v).toFixed(3)));
      if (!shown.length) continue;
      best[m.key] = m.best === "one"
        ? shown.reduce((a, b) => (Math.abs(b - 1) < Math.abs(a - 1) ? b : a))
        : Math.max(...shown);
    }
    return best;
  }

  function renderEvaluationTable(results, defs) {
    const t = $("eval-table");
    t.replaceChildren();
    const measures = MEASURES.filter((m) => results.some((r) => r[m.key] !== null && r[m.key] !== undefined));
    t.append(el("tr", {}, el("th", { text: "model" }), el("th", { class: "left", text: "metric" }),
      el("th", { class: "left", text: "source" }), el("th", { class: "left", text: "refitted", title: defs.refitted || "" }),
      ...measures.map((m) => el("th", { class: "measure", title: defs[m.key] || "", "data-measure": m.key },
        el("span", { class: "task", text: m.task }), el("br"), m.label))));
    const best = bestValues(results.filter((r) => !isBaseline(r)));
    let previous = null;
    for (const r of results) {
      const baseline = isBaseline(r);
      const first = r.model !== previous;
      previous = r.model;
      const tr = el("tr", { "data-model": r.model, "data-metric": r.metric || "", class: `${baseline ? "baseline" : ""}${first ? " first" : ""}` },
        el("td", { class: "model", text: first ? r.model : "" }),
        el("td", { class: "left" }, ...(r.metric ? [swatch(r.metric), r.metric] : ["–"])),
        el("td", { class: "left", text: first ? r.source : "" }),
        el("td", { class: "left", text: baseline ? "" : r.refitted ? "yes" : "no (as given)" }));
      for (const m of measures) {
        const v = r[m.key];
        const td = el("td", { "data-measure": m.key, text: dash(v) });
        if (!baseline && v !== null && v !== undefined && Number(Number(v).toFixed(3)) === best[m.key]) {
          td.classList.add("best");
          td.title = m.best === "one" ? "closest to 1 (no popularity bias) of the models" : "best of the models";
        }
        tr.append(td);
      }
      t.append(tr);
    }
    $("eval-legend").textContent = "Highlighted: the best model × metric of each column (the baselines are there for scale "
      + "and are not ranked; for the popularity ratio the best is the closest to 1, no lean to popular or unpopular items). "
      + `– : not measured${noRanking(results)}.`;
    const labels = Object.fromEntries(MEASURES.map((m) => [m.key, m.label]));
    $("eval-definitions").replaceChildren(...Object.entries(defs).flatMap(([key, text]) => [
      el("dt", { text: labels[key] || key }), el("dd", { text })]));
  }

  // the metrics with list measures but no ranking of user → item (whitened), named in the legend of the dashes
  function noRanking(results) {
    const ranking = MEASURES.filter((m) => m.task === "user → item").map((m) => m.key);
    const rows = results.filter((r) => !isBaseline(r));
    const without = [...new Set(rows.map((r) => r.metric))].filter((metric) => rows.filter((r) => r.metric === metric)
      .every((r) => ranking.every((k) => r[k] === null || r[k] === undefined)));
    return without.length ? ` (${listing(without)} ${without.length > 1 ? "have" : "has"} no user → item score, `
      + "so no Recall or nDCG)" : "";
  }

  function niceTicks(lo, hi) {
    const raw = (hi - lo) / 4;
    const pow = 10 ** Math.floor(Math.log10(raw));
    const step = [1, 2, 2.5, 5, 10].map((f) => f * pow).find((s) => s >= raw);
    const ticks = [];
    for (let t = Math.floor(lo / step + 1e-9) * step; t <= Math.ceil(hi / step - 1e-9) * step + step / 2; t += step) {
      ticks.push(Number(t.toFixed(10)));
    }
    return ticks;
  }

  // One measure: per model a group of bars (one per metric), the baselines as vertical reference lines. Inline SVG.
  function chartFor(m, rows, baselines, allMetrics, definition) {
    const models = [...new Set(rows.map((r) => r.model))];
    // a metric without the measure (whitened has no user → item score) gets no empty slot in every group
    const has = (metric) => rows.some((r) => r.metric === metric && r[m.key] !== null && r[m.key] !== undefined);
    const metrics = allMetrics.filter(has);
    const without = allMetrics.filter((metric) => !has(metric));
    const refs = baselines.filter((b) => b[m.key] !== null && b[m.key] !== undefined);
    const values = [...rows.map((r) => r[m.key]), ...refs.map((r) => r[m.key])].filter((v) => v !== null && v !== undefined);
    const W = 480, left = 166, right = 16, top = 14 + 11 * refs.length, barH = 7, gap = 1, groupGap = 9, axis = 20;
    const groupH = metrics.length * (barH + gap) - gap + groupGap;
    const H = top + models.length * groupH + axis;
    const lo0 = Math.min(0, ...values), hi0 = Math.max(0, ...values);
    const ticks = niceTicks(lo0, hi0 > lo0 ? hi0 : lo0 + 1);
    const lo = ticks[0], hi = ticks[ticks.length - 1];
    const x = (v) => left + ((v - lo) / (hi - lo)) * (W - left - right);
    const s = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `${m.label} per model and metric` });
    for (const t of ticks) {
      s.append(svg("line", { x1: x(t), x2: x(t), y1: top - 3, y2: H - axis, class: t === 0 ? "axis" : "gridline" }),
        svg("text", { x: x(t), y: H - 6, "text-anchor": "middle", class: "tick" }, String(t)));
    }
    models.forEach((model, gi) => {
      const y0 = top + gi * groupH + groupGap / 2;
      s.append(svg("text", { x: left - 8, y: y0 + (groupH - groupGap) / 2 + 4, "text-anchor": "end", class: "label" }, model));
      metrics.forEach((metric, mi) => {
        const r = rows.find((row) => row.model === model && row.metric === metric);
        const v = r ? r[m.key] : null;
        if (v === null || v === undefined) return;
        const a = x(Math.min(0, v)), b = x(Math.max(0, v));
        const rect = svg("rect", { x: a, y: y0 + mi * (barH + gap), width: Math.max(b - a, 0.75), height: barH, rx: 1.5,
          class: `bar m-${metric}`, "data-model": model, "data-metric": metric, "data-value": v });
        rect.append(svg("title", {}, `${model} · ${metric}: ${dash(v)}`));
        s.append(rect);
      });
    });
    refs.forEach((r, i) => {
      const v = r[m.key], xv = x(v);
      const line = svg("line", { x1: xv, x2: xv, y1: 12 + 11 * i, y2: H - axis, class: `ref ref-${r.model}`,
        "data-model": r.model, "data-value": v });
      line.append(svg("title", {}, `${r.model} baseline: ${dash(v)}`));
      const anchor = xv > W - 70 ? "end" : xv < left + 40 ? "start" : "middle";
      s.append(line, svg("text", { x: xv, y: 9 + 11 * i, "text-anchor": anchor, class: `reflabel ref-${r.model}` },
        `${r.model} ${dash(v)}`));
    });
    return el("div", { class: "chart", "data-measure": m.key },
      el("h3", { class: "chart-title" }, el("span", { text: m.label }), el("span", { class: "task", text: ` · ${m.task}` })),
      el("p", { class: "chart-what", text: definition }), s,
      without.length ? el("p", { class: "chart-without", text: `No bar for ${listing(without)}: no ${m.task} score.` })
        : null);
  }

  // ------------------------------------------------------------------ summary view

  async function loadSummary() {
    let body;
    try { body = await summaryOf(); }
    catch (e) { $("summary-status").textContent = `No summary: ${e.message}`; return; }
    $("summary-status").textContent = "";
    const s = body.summary, out = $("summary");
    out.replaceChildren();
    for (const [side, d] of Object.entries(s.sides)) {
      const card = el("div", { class: "card", "data-side": side });
      const how = d.sampled ? `${d.queries.toLocaleString()} of ${d.rows.toLocaleString()} (seeded sample)` : `all ${d.rows.toLocaleString()}`;
      const tau = d.tau_queries ? `weighted τ on ${d.tau_queries} queries` : "weighted τ left out (catalogue too large for its budget)";
      card.append(el("h2", { class: "section", text: `${side === "items" ? "Items" : "Users"}: ${how} queried, lists of ${s.k}` }),
        el("p", { class: "hint", text: `Popularity = ${d.popularity}, catalogue median ${d.catalogue_median_popularity}. RBO p = ${s.rbo_p}; ${tau}.` }));
      const metrics = Object.keys(Object.values(d.models)[0].metrics);
      const cat = Object.values(d.models).some((m) => Object.values(m.metrics).some((v) => v.category_precision !== null));
      const two = el("div", { class: metrics.length > 3 ? "two stacked" : "two" });  // side by side only while narrow
      const t1 = el("table", { class: "grid summary-quality" });
      const groups = [el("th", {})];
      if (cat) groups.push(el("th", { class: "group sep", colspan: String(metrics.length), text: `category precision@${s.k}` }));
      groups.push(el("th", { class: "group sep", colspan: String(metrics.length), text: "popularity bias" }));
      const head = [el("th", { text: "model" })];
      if (cat) metrics.forEach((m, i) => head.push(el("th", { class: i ? "" : "sep", text: m })));
      metrics.forEach((m, i) => head.push(el("th", { class: i ? "" : "sep", text: m })));
      t1.append(el("tr", {}, ...groups), el("tr", {}, ...head));
      for (const [model, mo] of Object.entries(d.models)) {
        const cells = [el("td", { text: model })];
        if (cat) metrics.forEach((m, i) => cells.push(el("td", { class: i ? "" : "sep", text: fmt(mo.metrics[m].category_precision) })));
        metrics.forEach((m, i) => cells.push(el("td", { class: i ? "" : "sep", text: fmt(mo.metrics[m].popularity_bias) })));
        t1.append(el("tr", {}, ...cells));
      }
      const t3 = el("table", { class: "grid summary-d" });
      t3.append(el("tr", {}, el("th", { text: "D-sensitivity" }), ...metrics.map((m) => el("th", { text: m }))));
      t3.append(el("tr", {}, el("td", { text: `mean Jaccard@${s.k}, 4 D-variants` }),
        ...metrics.map((m) => el("td", { text: fmt(d.d_sensitivity[m].jaccard) }))));
      t3.append(el("tr", {}, el("td", { text: "least similar pair" }),
        ...metrics.map((m) => el("td", { text: fmt(d.d_sensitivity[m].min_pair) }))));
      two.append(el("div", {}, t1, el("p", { class: "legend",
        text: (cat ? "Category precision: share of the neighbours in a category of the query. " : "")
          + "Popularity bias: median neighbour popularity / catalogue median (1 = neutral, > 1 = leans to popular rows)." })),
      el("div", {}, t3, el("p", { class: "legend",
        text: "Mean Jaccard between the lists of the four denoising D-variants, which all make the same predictions: "
          + "1.000 = the metric does not depend on the arbitrary D." })));
      const pairs = Object.keys(Object.values(d.models)[0].pairs);
      const t2 = el("table", { class: "grid summary-pairs" });
      t2.append(el("tr", {}, el("th", {}), ...pairs.map((p) => el("th", { class: "group sep", colspan: "3", text: p.replace("~", " ~ ") }))));
      t2.append(el("tr", {}, el("th", { text: "model" }),
        ...pairs.flatMap(() => [el("th", { class: "sep", text: `Jaccard@${s.k}` }), el("th", { text: "RBO" }), el("th", { text: "w. τ" })])));
      for (const [model, mo] of Object.entries(d.models)) {
        t2.append(el("tr", {}, el("td", { text: model }), ...pairs.flatMap((p) => [
          el("td", { class: "sep", text: fmt(mo.pairs[p].jaccard) }), el("td", { text: fmt(mo.pairs[p].rbo) }),
          el("td", { text: fmt(mo.pairs[p].weighted_tau) })])));
      }
      card.append(two, el("h3", { class: "section", text: "Agreement of each metric pair (means over the queries)" }),
        el("div", { class: "scroll" }, t2));
      out.append(card);
    }
  }

  async function loadFigures() {
    let body;
    try { body = await api("/figures"); } catch (e) { return; }
    const card = $("figures-card");
    if (!body.figures.length) {
      card.classList.remove("hidden");
      $("figures-how").textContent = `No heatmaps in this version: ${body.skipped}.`;
      $("panels-details").classList.add("hidden");
      return;
    }
    const h = body.heatmaps || {};
    $("figures-how").textContent = `Items ${h.order ? h.order.replace(/^items /, "") : "sorted by cluster"}; one colour scale `
      + `[${(h.colour_scale || [-1, 1]).join(", ")}] (red = similar, blue = opposite). Ground truth: ${h.ground_truth || "true similarity"}. `
      + `Cosine changes with the D-variant although every variant makes the same predictions; projected cosine is one picture for all of them.`;
    const grid = body.figures.find((f) => f.kind === "grid");
    if (grid) $("figure-main").replaceChildren(el("img", { src: grid.url, alt: grid.title, id: "heatmap-grid" }));
    const gallery = $("gallery");
    gallery.replaceChildren();
    for (const f of body.figures.filter((x) => x.kind === "panel")) {
      gallery.append(el("figure", {}, el("img", { src: f.url, alt: f.title, loading: "lazy" }), el("figcaption", { text: f.title })));
    }
    card.classList.remove("hidden");
  }


  // ------------------------------------------------------------------ online experiments (GET /experiments, the reports)

  // The admin token of the reports (when the server sets ADMIN_TOKEN): in memory, and in sessionStorage so that a
  // reload of this tab keeps it; sent only as an Authorization header, never in a URL.
  const TOKEN_KEY = "simserve.adminToken";
  const SRM_ALPHA = 0.001;  // the report's flag threshold (app/schemas/experiments.py, Srm.flag)
  const ARM_FIELDS = new Set(["name", "model", "metric", "weight", "share", "units", "exposures", "events", "ctr", "lift"]);
  const experimentsState = {
    listing: null,      // the last GET /experiments body
    selected: null,     // the name of the experiment whose report is shown
    report: null,       // its last report
    token: readToken(),
    listSeq: 0, reportSeq: 0, timer: null, busy: false,
  };

  function readToken() {
    try { return sessionStorage.getItem(TOKEN_KEY) || null; } catch (e) { return null; }
  }
  function keepToken(token) {
    experimentsState.token = token || null;
    try {
      if (token) sessionStorage.setItem(TOKEN_KEY, token); else sessionStorage.removeItem(TOKEN_KEY);
    } catch (e) { /* storage refused (private mode): the token stays in memory only */ }
  }

  const isNum = (v) => typeof v === "number" && Number.isFinite(v);
  const count = (v) => (isNum(v) ? v.toLocaleString("en-US") : "–");
  const percent = (v, digits = 2) => (isNum(v) ? `${(v * 100).toFixed(digits)}%` : "–");
  const signedPercent = (v, digits = 2) => (isNum(v) ? `${v >= 0 ? "+" : ""}${(v * 100).toFixed(digits)}%` : "–");
  const pValue = (p) => (isNum(p) ? (p < 0.0001 ? "< 0.0001" : p.toFixed(4)) : "–");
  const pIs = (p) => (isNum(p) && p < 0.0001 ? "p < 0.0001" : `p = ${pValue(p)}`);  // "p = 0.0123", "p < 0.0001"
  const hasInterval = (ci) => Array.isArray(ci) && ci.length === 2 && isNum(ci[0]) && isNum(ci[1]);
  function interval(ci, f) {
    if (!Array.isArray(ci) || ci.every((x) => !isNum(x))) return "–";
    return `[${f(ci[0])}, ${f(ci[1])}]`;
  }
  // a tick of a percent axis without float noise: 0.15000000000000002 -> "15%"
  const tickPercent = (t, signed = false) => `${signed && t > 0 ? "+" : ""}${Number((t * 100).toFixed(6))}%`;

  function openExperiments(name) {
    if (name && name !== experimentsState.selected) experimentsState.selected = name;
    if (!loaded.experiments) {
      loaded.experiments = true;
      wireExperiments();
      refreshExperiments();
    } else if (name && experimentsState.listing && $("experiment-select").value !== name) {
      selectExperiment(name, false);
    }
  }

  function wireExperiments() {
    $("experiments-controls").addEventListener("submit", (e) => e.preventDefault());
    $("experiment-select").addEventListener("change", () => selectExperiment($("experiment-select").value, true));
    $("experiments-refresh").addEventListener("click", () => refreshExperiments());
    $("experiments-auto").addEventListener("change", scheduleRefresh);
    $("experiments-every").addEventListener("change", scheduleRefresh);
    $("token-form").addEventListener("submit", (e) => {
      e.preventDefault();  // never a form submission: the token would go into a URL
      const token = $("token").value.trim();
      $("token").value = "";
      if (!token) return;
      keepToken(token);
      loadReport();
    });
    $("token-forget").addEventListener("click", () => { keepToken(null); loadReport(); });
  }

  // auto-refresh: off by default; while on, every N seconds, and only while this tab is shown and the page visible
  function scheduleRefresh() {
    clearInterval(experimentsState.timer);
    experimentsState.timer = null;
    if (!$("experiments-auto").checked) return;
    const seconds = Number($("experiments-every").value) || 10;
    experimentsState.timer = setInterval(() => {
      const shownTab = !$("view-experiments").classList.contains("hidden");
      if (shownTab && document.visibilityState === "visible" && !experimentsState.busy) refreshExperiments();
    }, seconds * 1000);
  }

  async function refreshExperiments() {
    experimentsState.busy = true;
    try {
      const listing = await loadExperimentsList();
      if (listing) await loadReport();
      $("experiments-updated").textContent = `updated ${new Date().toLocaleTimeString("en-GB")}`;
    } finally {
      experimentsState.busy = false;
    }
  }

  async function loadExperimentsList() {
    const seq = ++experimentsState.listSeq;
    const status = $("experiments-status");
    let body;
    try { body = await api("/experiments"); }
    catch (e) {
      if (seq !== experimentsState.listSeq) return null;
      status.className = "error";
      status.textContent = `The experiments cannot be listed: ${e.message}`;
      return null;
    }
    if (seq !== experimentsState.listSeq) return null;
    if (!body.configured || !(body.experiments || []).length) { explainNoExperiments(body); return null; }
    status.className = "hint hidden";
    status.textContent = "";
    experimentsState.listing = body;
    renderExperimentsList(body);
    $("experiments").classList.remove("hidden");
    return body;
  }

  function explainNoExperiments(body) {
    $("experiments").classList.add("hidden");
    const box = $("experiments-status");
    box.className = "card noeval";
    const file = body.status && body.status.file;
    const refusal = body.status && body.status.last_refusal;
    box.replaceChildren(
      el("h2", { class: "section", id: "no-experiments", text: body.configured
        ? "The experiments file of this server lists no experiment" : "This server runs no experiments" }),
      el("p", { text: body.configured
        ? `${file || "The file"} is loaded but defines no experiment.${refusal ? ` Last refusal: ${refusal.reason}` : ""}`
        : "EXPERIMENTS_FILE is unset, so no response is part of an experiment and there is no report to show." }),
      el("p", { text: "Start the server with EXPERIMENTS_FILE set to a TOML file of experiments (see docs/experiments.md; "
        + "the file is reloaded when it changes); exposures and feedback then go to the events database (EVENTS_DB, "
        + "default EVENTS_DIR/events.db):" }),
      el("pre", {}, el("code", { text: "EXPERIMENTS_FILE=experiments.toml EVENTS_DIR=events python -m app" })),
      el("pre", {}, el("code", { text: "[[experiment]]\nname = \"item-metric\"\nendpoint = \"similar-items\"\nsalt = \"2026-12\"\n"
        + "mode = \"ab\"\narms = [\n  { name = \"control\",   model = \"denoising-symmetric\", metric = \"cosine\",    weight = 50 },\n"
        + "  { name = \"projected\", model = \"denoising-symmetric\", metric = \"projected\", weight = 50 },\n]" })));
  }

  function armLine(arm) {
    return `${arm.name}: ${arm.model} · ${arm.metric} · weight ${arm.weight}`;
  }

  function renderExperimentsList(body) {
    const names = body.experiments.map((e) => e.name);
    if (!names.includes(experimentsState.selected)) experimentsState.selected = names[0];
    const select = $("experiment-select");
    select.replaceChildren(...body.experiments.map((e) => el("option", { value: e.name, text: `${e.name} (${e.mode})` })));
    select.value = experimentsState.selected;
    const st = body.status || {};
    const loadedAt = isNum(st.loaded_at) ? new Date(st.loaded_at * 1000).toLocaleString("en-GB") : null;
    const t = $("experiments-table");
    t.replaceChildren(el("tr", {}, el("th", { text: "experiment" }), el("th", { class: "left", text: "endpoint" }),
      el("th", { class: "left", text: "mode" }), el("th", { class: "left", text: "arms (model · metric · weight)" }),
      el("th", { class: "left", text: "status" })));
    for (const e of body.experiments) {
      const open = el("button", { type: "button", class: "linkish", text: e.name, "aria-label": `show the report of ${e.name}` });
      open.addEventListener("click", () => selectExperiment(e.name, true));
      const served = st.last_refusal ? "served; a newer file was refused" : "served";
      t.append(el("tr", { "data-experiment": e.name, class: e.name === experimentsState.selected ? "selected" : "" },
        el("td", {}, open), el("td", { class: "left", text: `/${e.endpoint}` }),
        el("td", { class: "left", text: e.mode === "interleave" ? "interleave (team draft)" : "A/B" }),
        el("td", { class: "left arms-list" }, ...(e.arms || []).map((a, i) =>
          el("span", { class: "arm-chip", title: armLine(a) }, el("b", { text: a.name }),
            ` ${a.model} · ${a.metric} · ${a.weight}${i === 0 ? " (baseline)" : ""}`))),
        el("td", { class: "left", text: loadedAt ? `${served} since ${loadedAt}` : served })));
    }
    const counts = Object.entries(st.events || {}).map(([k, v]) => `${k} ${count(v)}`).join(" · ");
    const parts = [];
    if (st.file) parts.push(`File ${st.file}${st.fingerprint ? ` (sha256 ${String(st.fingerprint).slice(0, 12)}…)` : ""}`);
    if (loadedAt) parts.push(`loaded ${loadedAt}`);
    if (counts) parts.push(`events of this worker: ${counts}`);
    const legend = $("experiments-file");
    legend.replaceChildren(parts.join("; ") + ".");
    if (st.last_refusal) {
      legend.append(el("br"), el("span", { class: "error", text: `A newer version of the file was refused (the one above is `
        + `still served): ${st.last_refusal.reason}` }));
    }
  }

  function selectExperiment(name, writeHash) {
    if (!name) return;
    experimentsState.selected = name;
    $("experiment-select").value = name;
    for (const tr of $("experiments-table").querySelectorAll("tr[data-experiment]")) {
      tr.classList.toggle("selected", tr.dataset.experiment === name);
    }
    if (writeHash) history.replaceState(null, "", `${location.pathname}${location.search}#experiments/${encodeURIComponent(name)}`);
    loadReport();
  }

  async function loadReport() {
    const name = experimentsState.selected;
    if (!name) return;
    const seq = ++experimentsState.reportSeq;
    const status = $("report-status");
    const token = experimentsState.token;
    status.className = "hint";
    status.textContent = experimentsState.report && experimentsState.report.name === name ? "" : `Loading the report of ${name}…`;
    $("token-forget").classList.toggle("hidden", !token);
    let body;
    try {
      body = await api(`/experiments/${encodeURIComponent(name)}/report`, token ? { Authorization: `Bearer ${token}` } : {});
    } catch (e) {
      if (seq !== experimentsState.reportSeq) return;
      reportError(name, e, token);
      return;
    }
    if (seq !== experimentsState.reportSeq) return;
    if (token) $("token-card").classList.remove("hidden");  // shown while a token is in use, so it can be changed
    $("token-state").textContent = token ? "token accepted" : "";
    status.textContent = "";
    experimentsState.report = body;
    renderReport(body);
  }

  function reportError(name, e, token) {
    const status = $("report-status");
    $("report-body").classList.add("hidden");
    experimentsState.report = null;
    status.className = "error";
    if (e.status === 401) {
      const first = $("token-card").classList.contains("hidden");
      $("token-card").classList.remove("hidden");
      $("token-forget").classList.toggle("hidden", !token);
      $("token-state").textContent = token ? "token refused" : "";
      status.textContent = token
        ? `The admin token was refused (401 Unauthorized): the report of ${name} needs this server's ADMIN_TOKEN. Enter it again above.`
        : `The reports of this server need its admin token (401 Unauthorized: ADMIN_TOKEN is set). Enter it above to see ${name}.`;
      if (first) $("token").focus();  // once: an auto-refresh must not pull the focus back here
    } else if (e.status === 404) {
      status.textContent = `No report for ${name}: ${e.message}. The experiments file may have changed: refresh.`;
    } else if (e.status === 503) {
      status.textContent = `The events database cannot be read right now (503): ${e.message}`;
    } else {
      status.textContent = `The report of ${name} cannot be shown: ${e.message}`;
    }
  }

  // arms coloured by their metric (the page's palette) unless two arms share a metric, then by position
  function armClasses(arms) {
    const metrics = arms.map((a) => a.metric);
    const distinct = new Set(metrics).size === metrics.length;
    return arms.map((a, i) => (distinct && METRIC_INFO[a.metric] ? `m-${a.metric}` : `arm-${i % 6}`));
  }

  function renderReport(r) {
    const arms = Array.isArray(r.arms) ? r.arms : [];
    const colours = armClasses(arms);
    const interleave = r.mode === "interleave";
    const exposures = interleave ? (arms[0] || {}).exposures : arms.reduce((n, a) => n + (isNum(a.exposures) ? a.exposures : 0), 0);
    const units = interleave ? (arms[0] || {}).units : arms.reduce((n, a) => n + (isNum(a.units) ? a.units : 0), 0);
    $("report").dataset.experiment = r.name;
    $("report-title").textContent = `${r.name}`;
    $("report-meta").textContent = `${interleave ? "team-draft interleaving" : "A/B test"} on /${r.endpoint} · ${arms.length} arms `
      + `· ${count(exposures)} exposures of ${count(units)} units${r.artifact_version ? ` · artifact ${r.artifact_version}` : ""}`;
    renderSrm(r.srm || {}, arms, interleave);
    renderArmsTable(arms, colours, interleave);
    const unlisted = Object.entries(r.unlisted_arms || {});
    $("unlisted").textContent = unlisted.length ? `Stored under arm labels the file no longer lists (not in the table): `
      + unlisted.map(([k, v]) => `${k}: ${count(v.units)} units, ${count(v.exposures)} exposures`).join("; ") + "." : "";
    const baseline = arms[0] ? arms[0].name : "the baseline";
    $("ctr-caption").textContent = "Click-through rate per arm, with its 95% Wilson interval";
    $("ctr-plot").replaceChildren(forestPlot(arms.map((a, i) => ({
      arm: a.name, label: i === 0 ? `${a.name} (baseline)` : a.name, cls: colours[i],
      value: (a.ctr || {}).value, ci: (a.ctr || {}).ci95, empty: "no exposures yet",
    })), { what: "CTR", fmt: percent, tick: (t) => tickPercent(t), zero: false, axis: "CTR (click events / exposures)" }));
    const lifted = arms.slice(1);
    $("lift-figure").classList.toggle("hidden", !lifted.length);
    $("lift-caption").textContent = `Lift of each arm over ${baseline}, with its 95% interval (dashed and hollow: the interval `
      + "crosses 0, no significant difference)";
    $("lift-plot").replaceChildren(forestPlot(lifted.map((a, i) => {
      const l = a.lift || {};
      const ci = l.ci95;
      const crosses = hasInterval(ci) && ci[0] <= 0 && ci[1] >= 0;
      const side = isNum(l.value) && l.value > 0 ? "up" : "down";
      return { arm: a.name, label: a.name, cls: `${colours[i + 1]} ${hasInterval(ci) ? (crosses ? "crosses" : `significant ${side}`) : ""}`,
        value: l.value, ci, empty: isNum(l.value) ? "no interval" : "no lift yet", p: l.p_value };
    }), { what: `lift over ${baseline}`, fmt: (v) => signedPercent(v), tick: (t) => tickPercent(t, true), zero: true, floor: -1,
      axis: `lift over ${baseline} (CTR ratio − 1)` }));
    renderInterleaving(r.interleaving, arms, colours);
    $("methods").replaceChildren(...Object.entries(r.methods || {}).flatMap(([key, text]) => [
      el("dt", { text: key }), el("dd", { text: String(text) })]));
    $("report-body").classList.remove("hidden");
  }

  function renderSrm(s, arms, interleave) {
    const line = $("srm");
    const flagged = s.flag === true;
    line.className = `srm ${flagged ? "flagged" : "ok"}`;
    line.dataset.flag = String(flagged);
    const what = interleave ? "the exposures whose first pick each team won, against 1/2 (the draft's coin)"
      : `units per arm ${arms.map((a) => count(a.units)).join(" : ")} against the bucket shares `
        + arms.map((a) => percent(a.share, 1)).join(" : ");
    const figures = `χ² = ${isNum(s.chi2) ? s.chi2.toFixed(2) : "–"}, ${pIs(s.p_value)}`;
    if (flagged) {
      line.replaceChildren(el("strong", { class: "badge", text: "⚠ Sample-ratio mismatch:" }),
        ` ${figures}, below ${SRM_ALPHA}. ${what[0].toUpperCase()}${what.slice(1)} do not match. `
        + (interleave ? "The draft's randomisation or the logging is broken" : "The assignment or the logging is broken")
        + "; do not trust the lift until that is explained.");
    } else {
      line.replaceChildren(el("strong", { text: "Sample-ratio check: " }),
        isNum(s.p_value) ? `${figures}, not flagged (flagged below p = ${SRM_ALPHA}); ${what}.` : `– (no units yet); ${what}.`);
    }
  }

  function eventNames(arms) {
    const names = [];
    for (const a of arms) for (const k of Object.keys(a.events || {})) if (!names.includes(k)) names.push(k);
    return names;
  }

  // arm fields a newer report may carry beyond the known ones: shown as they come (scalars, or {value, ci95})
  function extraFields(arms) {
    const keys = [];
    for (const a of arms) {
      for (const [k, v] of Object.entries(a)) {
        const shown = v === null || typeof v !== "object" || (typeof v === "object" && "value" in v);
        if (!ARM_FIELDS.has(k) && shown && !keys.includes(k)) keys.push(k);
      }
    }
    return keys;
  }

  function extraText(v) {
    if (v === null || v === undefined) return "–";
    if (typeof v === "object") return `${extraText(v.value)}${hasInterval(v.ci95) ? ` ${interval(v.ci95, (x) => dash(x, 4))}` : ""}`;
    if (typeof v === "number") return Number.isInteger(v) ? count(v) : dash(v, 4);
    return String(v);
  }

  function renderArmsTable(arms, colours, interleave) {
    const events = eventNames(arms);
    const extras = extraFields(arms);
    const t = $("arms-table");
    t.setAttribute("aria-label", "per arm: units, exposures, events, CTR with its 95% interval, lift over the baseline "
      + "with its 95% interval and p-value");
    const th = (text, title = "", cls = "") => el("th", { text, title, class: cls });
    t.replaceChildren(el("tr", {}, th("arm"), th("model", "", "left"), th("metric", "", "left"),
      th("buckets", interleave ? "interleave: every exposure shows both arms" : "the arm's share of the 10,000 buckets"),
      th("units", "distinct unit ids exposed"), th("exposures"),
      ...events.map((k) => th(`${k}s`, interleave ? `${k} events credited to the arm's team` : `${k} events`, "event")),
      th("CTR", "click events / exposures", "sep"), th("CTR 95% CI", "Wilson 95% interval"),
      th("lift", "CTR ratio over the baseline − 1", "sep"), th("lift 95% CI"), th("p-value", "two-sided, lift = 0"),
      ...extras.map((k) => th(k, "", "sep"))));
    arms.forEach((a, i) => {
      const ctr = a.ctr || {};
      const l = a.lift;
      const cell = (field, text, cls = "") => el("td", { "data-field": field, class: cls, text });
      const lift = i === 0 || !l
        ? [cell("lift", i === 0 ? "baseline" : "–", "sep muted"), cell("lift.ci95", "–"), cell("lift.p_value", "–")]
        : [cell("lift", signedPercent(l.value), "sep"), cell("lift.ci95", interval(l.ci95, (x) => signedPercent(x))),
          cell("lift.p_value", pValue(l.p_value))];
      const significant = i > 0 && l && hasInterval(l.ci95) && (l.ci95[0] > 0 || l.ci95[1] < 0);
      t.append(el("tr", { "data-arm": a.name, class: `${i === 0 ? "baseline" : ""}${significant ? " significant" : ""}` },
        el("td", { "data-field": "name" }, el("span", { class: `swatch ${colours[i]}` }), a.name),
        cell("model", a.model ?? "–", "left"), cell("metric", a.metric ?? "–", "left"),
        cell("share", isNum(a.share) ? percent(a.share) : "–"),
        cell("units", count(a.units)), cell("exposures", count(a.exposures)),
        ...events.map((k) => cell(`events.${k}`, count((a.events || {})[k]), "event")),
        cell("ctr", percent(ctr.value), "sep"), cell("ctr.ci95", interval(ctr.ci95, (x) => percent(x))),
        ...lift,
        ...extras.map((k) => cell(k, extraText(a[k]), "sep"))));
    });
    $("arms-legend").textContent = (interleave
      ? "Interleave: every exposure shows both arms' items, so both arms have the same units and exposures; an arm's events "
        + "are those on the items its team placed, its CTR those clicks / exposures, the lift paired (the same users see both). "
      : "")
      + "CTR as a percentage of exposures (an exposure with two clicked items counts 2); lift relative to the baseline arm; "
      + "– : not defined yet (no exposures, or no clicks to take a ratio of).";
  }

  // ticks of an axis over `values` (and 0 when withZero), none below `floor` (a lift is never below −100%)
  function niceDomain(values, withZero, floor = -Infinity) {
    const v = values.filter(isNum);
    if (withZero) v.push(0);
    if (!v.length) return [0, 1];
    let lo = Math.min(...v), hi = Math.max(...v);
    if (hi - lo < 1e-9) { const pad = Math.max(Math.abs(hi) * 0.1, 0.01); lo -= pad; hi += pad; }
    const ticks = niceTicks(lo, hi);
    if (ticks[0] < floor) return [floor, ...ticks.filter((t) => t > floor)];
    return ticks;
  }

  // A forest plot: one row per entry {arm, label, cls, value, ci [lo, hi], empty (text when no value)}: the estimate
  // as a dot, its interval as a line with caps, the numbers at the right; a vertical line at 0 when opts.zero.
  function forestPlot(rows, opts) {
    const W = 640, left = 130, right = 150, top = 8, rowH = 32, axis = 36;
    const H = top + Math.max(rows.length, 1) * rowH + axis;
    const ticks = niceDomain(rows.flatMap((r) => [r.value, ...(hasInterval(r.ci) ? r.ci : [])]), opts.zero, opts.floor);
    const lo = ticks[0], hi = ticks[ticks.length - 1];
    const x = (v) => left + ((v - lo) / (hi - lo)) * (W - left - right);
    const summary = rows.map((r) => `${r.arm}: ${opts.fmt(r.value)}${hasInterval(r.ci) ? `, 95% interval ${opts.fmt(r.ci[0])} to ${opts.fmt(r.ci[1])}` : ""}`);
    const s = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", class: "forest-plot",
      "aria-label": `${opts.what} per arm with 95% intervals. ${summary.join("; ")}` });
    s.append(svg("title", {}, `${opts.what} per arm with 95% intervals`));
    const plotBottom = top + rows.length * rowH;
    const anything = rows.some((r) => isNum(r.value));
    for (const t of anything ? ticks : []) {  // no axis without a value to put on it
      s.append(svg("line", { x1: x(t), x2: x(t), y1: top, y2: plotBottom, class: "gridline" }),
        svg("text", { x: x(t), y: plotBottom + 14, "text-anchor": "middle", class: "axis-tick" }, opts.tick(t)));
    }
    if (anything) s.append(svg("text", { x: (left + W - right) / 2, y: H - 4, "text-anchor": "middle", class: "axis-title" }, opts.axis));
    if (opts.zero && anything) {
      s.append(svg("line", { x1: x(0), x2: x(0), y1: top - 4, y2: plotBottom + 3, class: "zero" }));
    }
    rows.forEach((r, i) => {
      const y = top + i * rowH + rowH / 2;
      s.append(svg("text", { x: left - 10, y: y + 4, "text-anchor": "end", class: "label" }, r.label));
      if (isNum(r.value)) {
        s.append(svg("text", { x: W - right + 12, y: y - 1, class: "numbers" }, opts.fmt(r.value)),
          svg("text", { x: W - right + 12, y: y + 11, class: "numbers ci-text" }, interval(r.ci, opts.fmt)));
      }
      if (!isNum(r.value)) {
        s.append(svg("text", { x: (left + W - right) / 2, y: y + 4, "text-anchor": "middle", class: "none" }, r.empty));
        return;
      }
      const full = hasInterval(r.ci);
      const g = svg("g", { class: `${full ? "interval" : "point-only"} ${r.cls}`, "data-arm": r.arm, "data-value": r.value,
        ...(full ? { "data-lo": r.ci[0], "data-hi": r.ci[1] } : {}) });
      g.append(svg("title", {}, `${r.arm}: ${opts.what} ${opts.fmt(r.value)}`
        + (full ? `, 95% interval ${opts.fmt(r.ci[0])} to ${opts.fmt(r.ci[1])}` : ` (${r.empty})`)
        + (isNum(r.p) ? `, ${pIs(r.p)}` : "")));
      if (full) {
        g.append(svg("line", { x1: x(r.ci[0]), x2: x(r.ci[1]), y1: y, y2: y, class: "ci" }),
          svg("line", { x1: x(r.ci[0]), x2: x(r.ci[0]), y1: y - 6, y2: y + 6, class: "cap lo" }),
          svg("line", { x1: x(r.ci[1]), x2: x(r.ci[1]), y1: y - 6, y2: y + 6, class: "cap hi" }));
      }
      g.append(svg("circle", { cx: x(r.value), cy: y, r: 5, class: "est" }));
      s.append(g);
    });
    if (!rows.length) s.append(svg("text", { x: (left + W - right) / 2, y: top + rowH / 2 + 4, "text-anchor": "middle", class: "none" }, "no arms"));
    return s;
  }

  function renderInterleaving(inter, arms, colours) {
    const box = $("interleaving");
    box.classList.toggle("hidden", !inter);
    if (!inter) return;
    const names = Object.keys(inter.wins || {});
    const clicks = inter.clicks || {};
    const test = inter.sign_test || {};
    const t = $("interleave-table");
    t.replaceChildren(el("tr", {}, el("th", { text: "team" }), el("th", { text: "wins", title: "exposures where its team got more credited clicks" }),
      el("th", { text: "credited clicks" })));
    names.forEach((name, i) => t.append(el("tr", { "data-team": name },
      el("td", {}, el("span", { class: `swatch ${colours[i] || ""}` }), name),
      el("td", { "data-field": "wins", text: count(inter.wins[name]) }), el("td", { "data-field": "clicks", text: count(clicks[name]) }))));
    t.append(el("tr", { "data-team": "ties" }, el("td", { text: "ties" }), el("td", { "data-field": "ties", text: count(inter.ties) }),
      el("td", { text: "" })));
    $("wins-caption").textContent = `Wins, ties and losses over ${count(inter.exposures)} interleaved exposures`;
    $("wins-plot").replaceChildren(winsBar(inter, names, colours));
    $("sign-test").textContent = `${count(inter.exposures)} interleaved exposures of ${count(inter.units)} units. Sign test of `
      + `${names[0] || "the first arm"} against ${names[1] || "the second"}: ${count(test.wins)} wins, ${count(test.losses)} losses, `
      + `${count(test.ties)} ties dropped, ${pIs(test.p_value)} (two-sided, exact binomial).`;
    $("sign-test").dataset.p = isNum(test.p_value) ? String(test.p_value) : "";
  }

  // one horizontal bar: the first team's wins | ties | the second team's wins, widths proportional to the counts
  function winsBar(inter, names, colours) {
    const W = 560, left = 10, right = 10, top = 22, barH = 26, H = 74;
    const parts = [
      { part: "wins", arm: names[0], n: (inter.wins || {})[names[0]], cls: colours[0] || "", label: `${names[0]} wins` },
      { part: "ties", arm: "", n: inter.ties, cls: "ties", label: "ties" },
      { part: "wins", arm: names[1], n: (inter.wins || {})[names[1]], cls: colours[1] || "", label: `${names[1]} wins` },
    ];
    const total = parts.reduce((n, p) => n + (isNum(p.n) ? p.n : 0), 0);
    const s = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", class: "wins-plot",
      "aria-label": `interleaving outcomes: ${parts.map((p) => `${p.label} ${count(p.n)}`).join(", ")}` });
    s.append(svg("title", {}, "Interleaving: wins, ties and losses per exposure"));
    if (!total) {
      s.append(svg("text", { x: W / 2, y: top + barH / 2 + 4, "text-anchor": "middle", class: "none" }, "no interleaved exposures yet"));
      return s;
    }
    const scale = (W - left - right) / total;
    let at = left;
    parts.forEach((p, i) => {
      const width = (isNum(p.n) ? p.n : 0) * scale;
      const rect = svg("rect", { x: at, y: top, width, height: barH, class: `seg ${p.cls}`, "data-part": p.part, "data-arm": p.arm,
        "data-count": isNum(p.n) ? p.n : 0 });
      rect.append(svg("title", {}, `${p.label}: ${count(p.n)} of ${count(total)} exposures`));
      s.append(rect);
      // the teams' counts above the bar at its ends, the ties below it at the middle of their segment
      const anchor = i === 0 ? "start" : i === 2 ? "end" : "middle";
      const tx = i === 0 ? left : i === 2 ? W - right : Math.min(Math.max(at + width / 2, left + 40), W - right - 40);
      s.append(svg("text", { x: tx, y: i === 1 ? top + barH + 15 : top - 7, "text-anchor": anchor, class: "label",
        "data-part": p.part }, `${p.label} ${count(p.n)}`));
      at += width;
    });
    const mid = left + (W - left - right) / 2;
    const half = svg("line", { x1: mid, x2: mid, y1: top - 3, y2: top + barH + 3, class: "zero" });
    half.append(svg("title", {}, "half of the exposures: where the bar's ends meet when both teams win as often"));
    s.append(half);
    return s;
  }

  init();
})();
