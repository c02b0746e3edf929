// The comparison page: plain DOM + fetch against this server's own API; no framework, no build step.
// Every value from the API is put into the page with textContent (never innerHTML).
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const METRIC_INFO = {
    dot: "inner product of the raw embeddings: long (popular) vectors win",
    cosine: "cosine of the raw embeddings: moves with the arbitrary D of the denoising objective",
    projected: "cosine in the original space (rows / columns of X A Bᵀ): the same for every D",
  };
  const MODEL_INFO = {
    "denoising-symmetric": "objective 1, A = B = V diag(f)^½",
    "denoising-item-orthonormal": "objective 1, B = V (item cosine = identity at full rank)",
    "denoising-user-orthonormal": "objective 1, A = V",
    "denoising-sigma-matched": "objective 1, D mimics weight decay",
    "weight-decay": "objective 2 (usual MF), unique up to rotation",
  };
  const state = { side: "items", mode: "metrics", model: null, metric: "cosine", k: 10, id: null, models: [] };
  let suggestTimer = null, suggestSeq = 0, compareSeq = 0, activeSuggestion = -1, summaryLoaded = false;

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
  const fmt = (v, digits = 3) => (v === null || v === undefined ? "n/a" : Number(v).toFixed(digits));
  const pct = (v) => (v === null || v === undefined ? "n/a" : `${Math.round(v * 100)}%`);

  function chip(text) {
    const c = el("span", { class: "chip", text });
    let h = 0;
    for (const ch of text) h = (h * 31 + ch.codePointAt(0)) % 360;
    c.style.background = `hsl(${h} 70% 92%)`;
    c.style.borderColor = `hsl(${h} 45% 78%)`;
    return c;
  }

  async function api(path) {
    const r = await fetch(path, { headers: { Accept: "application/json" } });
    const body = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(body.detail || `${r.status} ${r.statusText}`);
    return body;
  }

  // ------------------------------------------------------------------ setup

  async function init() {
    readUrl();
    try {
      const models = await api("/models");
      $("version").textContent = `artifact ${models.artifact_version} · ${describeDataset(models)}`;
      state.models = Object.keys(models.models);
      if (!state.model) state.model = models.defaults.model;
      for (const name of state.models) $("model").append(el("option", { value: name, text: name }));
      for (const m of models.metrics) $("metric").append(el("option", { value: m, text: m }));
      $("model").value = state.model;
      $("metric").value = state.metric;
      $("k").value = String(state.k);
    } catch (e) {
      $("version").textContent = "no artifact version loaded";
      $("status").textContent = `The API is not ready: ${e.message}`;
      $("status").className = "error";
      return;
    }
    wire();
    syncControls();
    route();
    if (state.id) loadComparison();
  }

  function describeDataset(models) {
    const c = models.counts, d = models.dataset || {};
    return `${d.kind || "dataset"}: ${c.users.toLocaleString()} users × ${c.items.toLocaleString()} items, k = ${c.k}`;
  }

  function readUrl() {
    const p = new URLSearchParams(location.search);
    if (p.get("user_id")) { state.side = "users"; state.id = p.get("user_id"); }
    else if (p.get("item_id")) { state.side = "items"; state.id = p.get("item_id"); }
    if (p.get("models") !== null || p.get("metric")) state.mode = "models";
    if (p.get("model")) state.model = p.get("model");
    if (p.get("metric")) state.metric = p.get("metric");
    if (p.get("k")) state.k = Number(p.get("k")) || 10;
  }

  function writeUrl() {
    const p = new URLSearchParams();
    p.set(state.side === "items" ? "item_id" : "user_id", state.id);
    if (state.mode === "models") p.set("metric", state.metric); else p.set("model", state.model);
    p.set("k", String(state.k));
    history.replaceState(null, "", `/?${p.toString()}${location.hash}`);
  }

  function wire() {
    for (const b of $("side").querySelectorAll("button")) b.addEventListener("click", () => {
      state.side = b.dataset.side; state.id = null; $("search").value = ""; syncControls();
      $("result").classList.add("hidden");
      $("status").className = "hint";
      $("status").textContent = state.side === "items" ? "Search for an item above, then pick it." : "Type a user id and press Enter.";
    });
    for (const b of $("mode").querySelectorAll("button")) b.addEventListener("click", () => {
      state.mode = b.dataset.mode; syncControls(); if (state.id) loadComparison();
    });
    $("model").addEventListener("change", () => { state.model = $("model").value; if (state.id) loadComparison(); });
    $("metric").addEventListener("change", () => { state.metric = $("metric").value; if (state.id) loadComparison(); });
    $("k").addEventListener("change", () => { state.k = Number($("k").value); if (state.id) loadComparison(); });
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
  }

  function syncControls() {
    for (const b of $("side").querySelectorAll("button")) b.classList.toggle("on", b.dataset.side === state.side);
    for (const b of $("mode").querySelectorAll("button")) b.classList.toggle("on", b.dataset.mode === state.mode);
    $("model-field").classList.toggle("hidden", state.mode !== "metrics");
    $("metric-field").classList.toggle("hidden", state.mode !== "models");
    $("search-label").textContent = state.side === "items" ? "Item title or id" : "User id (press Enter)";
    $("search").placeholder = state.side === "items" ? "Type a title or an id…" : "e.g. u7";
  }

  function route() {
    const summary = location.hash === "#summary";
    $("view-compare").classList.toggle("hidden", summary);
    $("view-summary").classList.toggle("hidden", !summary);
    $("tab-compare").classList.toggle("active", !summary);
    $("tab-summary").classList.toggle("active", summary);
    if (summary && !summaryLoaded) { summaryLoaded = true; loadSummary(); loadFigures(); }
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
    loadComparison();
  }

  // ------------------------------------------------------------------ one query

  async function loadComparison() {
    const p = new URLSearchParams();
    p.set(state.side === "items" ? "item_id" : "user_id", state.id);
    if (state.mode === "models") { for (const m of state.models) p.append("models", m); p.set("metric", state.metric); }
    else p.set("model", state.model);
    p.set("k", String(state.k));
    const seq = ++compareSeq;
    $("status").className = "hint";
    $("status").textContent = "Comparing…";
    let body;
    try { body = await api(`/compare-metrics?${p}`); }
    catch (e) {
      if (seq !== compareSeq) return;
      $("status").className = "error"; $("status").textContent = e.message; $("result").classList.add("hidden"); return;
    }
    if (seq !== compareSeq) return;
    writeUrl();
    $("status").textContent = "";
    render(body);
  }

  function render(body) {
    renderQuery(body);
    const counts = new Map();
    const key = body.side === "items" ? "item_id" : "user_id";
    for (const l of body.lists) for (const n of l.neighbors) counts.set(n[key], (counts.get(n[key]) || 0) + 1);
    const queryCats = new Set(body.query.categories || []);
    const cols = $("columns");
    cols.replaceChildren();
    cols.className = `columns n${body.lists.length}`;
    for (const l of body.lists) {
      const info = body.compare === "metrics" ? METRIC_INFO[l.metric] : `${l.metric} · ${MODEL_INFO[l.model] || ""}`;
      const stats = el("div", { class: "stats" },
        el("span", { class: "stat", title: "median popularity of the neighbours / catalogue median" },
          "popularity ", el("b", { text: l.popularity_ratio === null ? "n/a" : `×${fmt(l.popularity_ratio, 2)}` }), " median"));
      if (l.category_share !== null) {
        stats.append(el("span", { class: "stat", title: "neighbours sharing a category with the query" },
          "same category ", el("b", { text: pct(l.category_share) })));
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
      cols.append(el("div", { class: "col", "data-list": l.name },
        el("header", {}, el("h3", { text: l.name }), el("div", { class: "what", text: info }), stats), ol));
    }
    renderPairs(body);
    $("result").classList.remove("hidden");
  }

  function renderQuery(body) {
    const q = body.query, box = $("query");
    box.replaceChildren();
    const what = body.compare === "metrics"
      ? `dot, cosine and projected cosine of model ${body.model}`
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
        ? "Dot product favours popular items; cosine depends on an arbitrary rescaling D of the embeddings; projected cosine does not."
        : "Every denoising variant makes the same predictions: lists that differ between them show how arbitrary that metric is." }));
  }

  function bar(v) {
    const b = el("span", { class: "bar" });
    b.style.width = `${Math.max(0, Math.min(1, v || 0)) * 50}px`;
    return b;
  }

  function renderPairs(body) {
    const t = $("pairs");
    t.replaceChildren();
    const tau = body.weighted_tau;
    t.append(el("tr", {}, el("th", { text: "pair" }), el("th", { text: `Jaccard@${body.k}` }),
      el("th", { text: `RBO (p = ${body.rbo_p})` }), el("th", { text: "weighted τ" })));
    const short = (name) => name.replace(/^denoising-/, "");  // model names: the D-variant is enough here
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

  // ------------------------------------------------------------------ summary view

  async function loadSummary() {
    let body;
    try { body = await api("/compare-metrics/summary"); }
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
      const two = el("div", { class: "two" });
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
      card.append(two, el("h3", { class: "section", text: "Agreement of each metric pair (means over the queries)" }), t2);
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

  init();
})();
