// The Map page: every item a point (scatter.js draws them), coloured by cluster, label or
// folder; hover for a thumbnail, click to open, lasso to select, then search by the
// selection's mean or see its similarity matrix.
"use strict";

const SHOWN = 60;           // selected items shown as tiles (the count says how many there are)
const MEAN_OF = 200;        // "similar to the selection" averages at most this many (evenly picked)
const MATRIX_OF = 64;       // the API's limit for a matrix

const state = {
  meta: null,
  by: "cluster",
  colors: {},               // colouring -> Uint16Array
  ids: null,                // Uint32Array | Float64Array, point index -> item id
  idsReady: null,
  selection: null,          // Uint32Array of point indexes
  names: new Map(),         // item id -> file name (hover captions)
};
// For tests and benchmarks: when the first frame was drawn, in milliseconds since the
// navigation started (the page, its scripts, the map's summary and buffers all included).
const stats = { firstRender: null, points: 0, renderer: null };
let scatter = null;

async function buffer(url, Type) {
  const resp = await fetch(url, { credentials: "same-origin" });
  if (!resp.ok) {
    let msg = `${resp.status} ${resp.statusText}`;
    try { msg = (await resp.json()).error.message; } catch (_) { /* not JSON */ }
    throw new Error(msg);
  }
  return new Type(await resp.arrayBuffer());
}

async function colors(by) {
  if (!state.colors[by]) state.colors[by] = await buffer(state.meta.colors[by].url, Uint16Array);
  return state.colors[by];
}

// ------------------------------------------------------------------ loading
async function load() {
  let meta;
  try {
    meta = await api("/api/map");
  } catch (err) {
    if (err.status === 404) { showEmpty(err.message); return; }
    setError(err.message);
    return;
  }
  state.meta = meta;
  state.colors = {};
  $("empty").hidden = true;
  $("tools").hidden = false;
  $("map-wrap").hidden = false;
  if (!scatter) makeScatter();
  const [xy, cats] = await Promise.all([buffer(meta.points, Float32Array), colors(state.by)]);
  scatter.setPoints(xy, meta.bounds);
  scatter.setColors(cats);
  scatter.drawSync();
  stats.firstRender = performance.now();
  stats.points = meta.count;
  state.idsReady = buffer(meta.ids, meta.ids_dtype === "uint32" ? Uint32Array : Float64Array)
    .then((ids) => { state.ids = ids; return ids; });
  renderLegend();
  $("count").textContent = `${meta.count.toLocaleString()} images · ${meta.method.toUpperCase()}` +
    (meta.sampled ? ` (fitted on ${meta.fitted_on.toLocaleString()}, the rest placed)` : "");
  await state.idsReady;
}

function makeScatter() {
  scatter = new Scatter($("map"), $("overlay"), {
    hover: showTooltip,
    click: async (i) => { const ids = await state.idsReady; openItem(ids[i], [["category", categoryName(i)]]); },
    lasso: (indices) => select(indices),
  }, new URLSearchParams(location.search).get("renderer") || "auto");
  stats.renderer = scatter.renderer.name;
  scatter.setBackground(getComputedStyle(document.body).getPropertyValue("--panel"));
  scatter.padRight = $("legend").getBoundingClientRect().width + 20;
  window.lookalikeMap = { scatter, stats, state, select };
}

function showEmpty(message) {
  $("empty").hidden = false;
  $("tools").hidden = true;
  $("map-wrap").hidden = true;
  $("empty-text").textContent = `${message.replace(/, or POST \/api\/map$/, "")}. Or make it here:`;
}

async function compute(e) {
  e.preventDefault();
  const go = $("compute-go");
  go.disabled = true;
  go.textContent = "Laying out…";
  setError(null);
  try {
    await api("/api/map", { method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ method: $("method").value }) });
  } catch (err) {
    if (err.status !== 503) { setError(err.message); go.disabled = false; go.textContent = "Make the map"; return; }
    // Past the request deadline the layout goes on in the server: ask until it is there.
    while (true) {
      await new Promise((r) => setTimeout(r, 3000));
      try { await api("/api/map"); break; } catch (_) { /* not yet */ }
    }
  }
  go.disabled = false;
  go.textContent = "Make the map";
  await load();
}

// ------------------------------------------------------------------ colours and legend
function categoryName(i) {
  const c = state.colors[state.by][i];
  const cats = state.meta.colors[state.by].categories;
  return c === SCATTER_NONE || !cats[c] ? "none" : cats[c].name;
}

async function colourBy(by) {
  state.by = by;
  const p = new URLSearchParams(location.search);
  if (by === "cluster") p.delete("color"); else p.set("color", by);
  setURL(p, false);
  try { scatter.setColors(await colors(by)); } catch (err) { setError(err.message); }
  renderLegend();
}

function renderLegend() {
  const cats = state.meta.colors[state.by].categories;
  const order = cats.map((c, k) => k).sort((a, b) => cats[b].count - cats[a].count);
  const shown = order.slice(0, 24).filter((k) => cats[k].count > 0);
  const items = shown.map((k) => {
    const swatch = el("span", { class: "swatch" });
    swatch.style.background = `rgb(${categoryColour(k).join(",")})`;
    return el("li", {}, el("button", { type: "button", title: `Select the ${cats[k].count.toLocaleString()} points of ${cats[k].name}`,
      onclick: () => selectCategory(k) }, swatch, el("span", { class: "legend-name", textContent: cats[k].name }),
    el("span", { class: "legend-count", textContent: cats[k].count.toLocaleString() })));
  });
  const none = cats.length ? "" : state.by === "cluster" ? "No clusters yet (lookalike cluster)." : state.by === "label"
    ? "No labels yet (lookalike label)." : "";
  $("legend").replaceChildren(...[el("ul", {}, ...items),
    order.length > shown.length ? el("p", { class: "hint", textContent: `and ${order.length - shown.length} more` }) : null,
    none ? el("p", { class: "hint", textContent: none }) : null].filter(Boolean));
}

function selectCategory(k) {
  const cats = state.colors[state.by];
  const out = new Uint32Array(cats.length);
  let m = 0;
  for (let i = 0; i < cats.length; i++) if (cats[i] === k) out[m++] = i;
  select(out.slice(0, m));
}

// ------------------------------------------------------------------ hover
let hoverTimer = null;
function showTooltip(i, x, y) {
  const tip = $("tooltip");
  clearTimeout(hoverTimer);
  if (i < 0 || !state.ids) { tip.hidden = true; return; }
  const id = state.ids[i];
  $("tooltip-img").src = `/api/items/${id}/thumbnail?size=128`;
  $("tooltip-text").textContent = `${state.names.get(id) || `#${id}`} · ${categoryName(i)}`;
  const wrap = $("map-wrap").getBoundingClientRect();
  tip.style.left = `${Math.min(x + 14, wrap.width - 180)}px`;
  tip.style.top = `${Math.min(y + 14, wrap.height - 190)}px`;
  tip.hidden = false;
  if (!state.names.has(id)) {
    hoverTimer = setTimeout(async () => {
      try {
        const item = await api(`/api/items/${id}`);
        state.names.set(id, item.name);
        if (scatter.hovered === i) $("tooltip-text").textContent = `${item.name} · ${categoryName(i)}`;
      } catch (_) { /* the thumbnail is enough */ }
    }, 150);
  }
}

// ------------------------------------------------------------------ selection
async function select(indices) {
  const ids = await state.idsReady;
  state.selection = indices && indices.length ? indices : null;
  scatter.setSelection(state.selection);
  scatter.setMarks([]);
  $("results").hidden = true;
  const sec = $("selection");
  sec.hidden = !state.selection;
  if (!state.selection) return;
  const n = state.selection.length;
  $("selection-title").textContent = `${n.toLocaleString()} selected`;
  $("selection-note").textContent = n > SHOWN ? `Showing ${SHOWN} of them, evenly picked.` : "";
  $("as-matrix").textContent = n > MATRIX_OF ? `Show ${MATRIX_OF} as a matrix` : "Show as matrix";
  $("selection-grid").replaceChildren(...spread(state.selection, SHOWN).map((i) => tile({ id: ids[i] }, openItem)));
}

async function similarToSelection() {
  const ids = await state.idsReady;
  const picked = spread(state.selection, MEAN_OF).map((i) => ids[i]);
  // Equal weights summing to 1: the query is the selection's mean (what the search ranks by
  // is its direction, so any equal weights would do; 1/n keeps the query's scale).
  const terms = picked.map((id) => ({ id, weight: 1 / picked.length }));
  setError(null);
  try {
    const res = await api("/api/search", { method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ terms, k: 48 }) });
    $("results").hidden = false;
    $("results-note").textContent = `The ${res.hits.length} images nearest the mean of ` +
      (picked.length < state.selection.length ? `${picked.length} of the ${state.selection.length.toLocaleString()} selected (evenly picked)`
        : `the ${picked.length} selected`) + ". Ringed on the map.";
    $("results-grid").replaceChildren(...res.hits.map((h) => tile(h, openItem)));
    scatter.setMarks(res.hits.map((h) => indexOf(ids, h.id)).filter((i) => i >= 0));
    $("results").scrollIntoView({ block: "nearest", behavior: "smooth" });
  } catch (err) { setError(err.message); }
}

function indexOf(ids, id) {  // the map's ids come in ascending order
  let lo = 0, hi = ids.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (ids[mid] === id) return mid;
    if (ids[mid] < id) lo = mid + 1; else hi = mid - 1;
  }
  return Array.prototype.indexOf.call(ids, id);
}

async function selectionMatrix() {
  const ids = await state.idsReady;
  showMatrix(spread(state.selection, MATRIX_OF).map((i) => ids[i]));
}

// ------------------------------------------------------------------ wiring
function toggleLasso() {
  const on = $("lasso").getAttribute("aria-pressed") !== "true";
  $("lasso").setAttribute("aria-pressed", String(on));
  scatter.setLassoMode(on);
}

function wire() {
  $("color-by").addEventListener("change", () => colourBy($("color-by").value));
  $("lasso").addEventListener("click", toggleLasso);
  $("select-view").addEventListener("click", () => select(scatter.inView()));
  $("reset-view").addEventListener("click", () => scatter.fit());
  $("clear-selection").addEventListener("click", () => select(null));
  $("similar").addEventListener("click", similarToSelection);
  $("as-matrix").addEventListener("click", selectionMatrix);
  $("compute").addEventListener("submit", compute);
  gridKeys($("selection-grid"));
  gridKeys($("results-grid"));
  document.addEventListener("keydown", (e) => {
    if (!scatter || e.target.closest("input, select, textarea, dialog")) return;
    if (e.key === "Escape" && state.selection) select(null);
    else if ((e.key === "l" || e.key === "L") && !e.ctrlKey && !e.metaKey) toggleLasso();
    else if ((e.key === "a" || e.key === "A") && !e.ctrlKey && !e.metaKey) select(scatter.inView());
  });
}

async function start() {
  wire();
  const by = new URLSearchParams(location.search).get("color");
  if (by === "label" || by === "folder") { state.by = by; $("color-by").value = by; }
  try { await load(); } catch (err) { setError(err.message); }
}

start();
