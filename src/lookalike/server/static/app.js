// lookalike web UI: plain JavaScript, no build step. Talks only to this server's /api.
"use strict";

const PAGE = 48;
const DEBOUNCE_MS = 220;
const $ = (id) => document.getElementById(id);

const state = {
  q: "",            // the text in the search box (may use id:N and weights, as on the CLI)
  similar: null,    // "more like this" item id
  image: null,      // a File to search by
  imageURL: null,
  likes: [],
  dislikes: [],
  hits: [],
  hasMore: false,
  loading: false,
  seq: 0,           // responses to older requests are dropped
  controller: null,
  info: null,
  detail: -1,       // index in hits of the open detail view
};

// ------------------------------------------------------------------ URL <-> state
function readURL() {
  const p = new URLSearchParams(location.search);
  state.q = p.get("q") || "";
  const sim = parseInt(p.get("similar") || "", 10);
  state.similar = Number.isFinite(sim) ? sim : null;
  const ids = (name) => (p.get(name) || "").split(",").map((s) => parseInt(s, 10)).filter(Number.isFinite);
  state.likes = ids("like");
  state.dislikes = ids("dislike");
  searchFilters.read(p);
  $("q").value = state.q;
}

function writeURL(push) {
  const p = new URLSearchParams();
  if (state.q) p.set("q", state.q);
  if (state.similar !== null) p.set("similar", String(state.similar));
  if (state.likes.length) p.set("like", state.likes.join(","));
  if (state.dislikes.length) p.set("dislike", state.dislikes.join(","));
  searchFilters.write(p);
  setURL(p, push);
}

function terms() {
  const t = [];
  if (state.similar !== null) t.push({ id: state.similar, weight: 1 });
  for (const id of state.likes) t.push({ id, weight: 1 });
  for (const id of state.dislikes) t.push({ id, weight: -1 });
  return t;
}

// A person filter alone is a query too: that person's photos, most typical face first.
function hasQuery() {
  return Boolean(state.q.trim() || state.image || state.similar !== null || state.likes.length || state.dislikes.length ||
                 searchFilters.person.length);
}

function request(offset, signal) {
  if (state.image) {
    const form = new FormData();
    form.append("file", state.image, state.image.name || "image");
    form.append("k", String(PAGE));
    form.append("offset", String(offset));
    const more = terms();
    if (state.q.trim()) more.unshift({ text: state.q.trim(), weight: 1 });
    if (more.length) form.append("terms", JSON.stringify(more));
    if (searchFilters.active()) form.append("filters", JSON.stringify(searchFilters.body()));
    return api("/api/search/image", { method: "POST", body: form, signal });
  }
  const body = { k: PAGE, offset, terms: terms() };
  if (state.q.trim()) body.q = state.q.trim();
  if (searchFilters.active()) body.filters = searchFilters.body();
  return api("/api/search", { method: "POST", body: JSON.stringify(body), signal,
                              headers: { "content-type": "application/json" } });
}

// ------------------------------------------------------------------ searching
async function search({ append = false, push = false } = {}) {
  if (!append) writeURL(push);
  renderRefine();
  if (!hasQuery()) {
    if (state.controller) state.controller.abort();
    state.hits = []; state.hasMore = false;
    renderGrid(); showEmpty(true); setError(null); $("count").textContent = "";
    return;
  }
  if (append && (state.loading || !state.hasMore)) return;
  if (state.controller) state.controller.abort();
  state.controller = new AbortController();
  const seq = ++state.seq;
  state.loading = true;
  showEmpty(false);
  $("spinner").hidden = false;
  if (!append) renderSkeleton();
  try {
    const res = await request(append ? state.hits.length : 0, state.controller.signal);
    if (seq !== state.seq) return;
    const hits = res.hits.filter((h) => h.id !== state.similar);
    state.hits = append ? state.hits.concat(hits) : hits;
    state.hasMore = res.has_more;
    setError(null);
    renderGrid(append ? hits.length : -1);
    const n = state.hits.length;
    $("count").textContent = n ? `${n}${state.hasMore ? "+" : ""} result${n === 1 ? "" : "s"} · ${res.took_ms.toFixed(0)} ms`
                               : "";
    if (!n) showNoResults();
  } catch (err) {
    if (err.name === "AbortError" || seq !== state.seq) return;
    state.hits = append ? state.hits : []; state.hasMore = false;
    if (!append) renderGrid();
    setError(err.message);
    $("count").textContent = "";
  } finally {
    if (seq === state.seq) { state.loading = false; $("spinner").hidden = true; }
  }
  if (state.hasMore && nearBottom()) search({ append: true });
}

let timer = null;
function searchSoon() {
  clearTimeout(timer);
  timer = setTimeout(() => search(), DEBOUNCE_MS);
}

// ------------------------------------------------------------------ rendering
function setError(msg) {
  const el = $("error");
  el.hidden = !msg;
  el.textContent = msg || "";
}

function showEmpty(on) {
  $("empty").hidden = !on;
  if (on) {
    const info = state.info;
    $("empty").querySelector("h1").textContent = "Find the image you mean.";
    $("empty-text").textContent = !info ? "Type what you are looking for, or drop an image anywhere on the page."
      : info.text_search
        ? `Search ${info.items.toLocaleString()} images by words, or drop an image anywhere on the page.`
        : `Drop an image anywhere on the page to find the ones like it among ${info.items.toLocaleString()} images (this model reads no text).`;
  }
}

function showNoResults() {
  $("empty").hidden = false;
  $("empty").querySelector("h1").textContent = "No matches.";
  $("empty-text").textContent = "Nothing passed the filters; try other words or remove a refinement.";
}

function renderSkeleton() {
  const grid = $("grid");
  grid.replaceChildren();
  for (let i = 0; i < 12; i++) {
    const li = document.createElement("li");
    li.className = "skeleton";
    grid.append(li);
  }
}

function card(hit, index) {
  const li = document.createElement("li");
  li.className = "card";
  li.tabIndex = 0;
  li.dataset.index = String(index);
  li.dataset.id = String(hit.id);
  li.setAttribute("aria-label", `${hit.name}, score ${hit.score.toFixed(3)}`);
  if (state.likes.includes(hit.id)) li.classList.add("liked");
  if (state.dislikes.includes(hit.id)) li.classList.add("disliked");
  const img = document.createElement("img");
  img.loading = "lazy";
  img.decoding = "async";
  img.alt = hit.name;
  img.addEventListener("load", () => img.classList.add("loaded"));
  img.src = hit.thumbnail;
  const score = document.createElement("span");
  score.className = "score";
  score.textContent = hit.score.toFixed(3);
  const name = document.createElement("div");
  name.className = "name";
  name.textContent = hit.name;
  if (hit.caption) {  // the caption replaces the file name on the card; the name stays in the tooltip
    name.textContent = hit.caption;
    name.classList.add("caption");
    name.title = `${hit.caption}\n${hit.name}`;
  }
  const votes = document.createElement("div");
  votes.className = "votes";
  for (const [label, title, fn] of [["👍", "More like this one (L)", like], ["👎", "Less like this one (D)", dislike]]) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = label;
    b.title = title;
    b.setAttribute("aria-label", title);
    b.addEventListener("click", (e) => { e.stopPropagation(); fn(hit.id); });
    votes.append(b);
  }
  li.append(img, score, name, votes);
  li.addEventListener("click", () => openDetail(index));
  return li;
}

function renderGrid(appended = -1) {
  const grid = $("grid");
  if (appended >= 0) {
    const start = state.hits.length - appended;
    grid.append(...state.hits.slice(start).map((h, i) => card(h, start + i)));
  } else {
    grid.replaceChildren(...state.hits.map(card));
  }
}

function chip(id, kind) {
  const span = document.createElement("span");
  span.className = `chip ${kind}`;
  const img = document.createElement("img");
  img.src = `/api/items/${id}/thumbnail?size=128`;
  img.alt = "";
  const label = document.createElement("span");
  label.textContent = { like: "👍", dislike: "👎", similar: "similar to" }[kind] + ` #${id}`;
  const x = document.createElement("button");
  x.type = "button";
  x.textContent = "×";
  x.setAttribute("aria-label", `Remove #${id}`);
  x.addEventListener("click", () => {
    if (kind === "similar") state.similar = null;
    state.likes = state.likes.filter((v) => v !== id || kind !== "like");
    state.dislikes = state.dislikes.filter((v) => v !== id || kind !== "dislike");
    search({ push: true });
  });
  span.append(img, label, x);
  return span;
}

function renderRefine() {
  const chips = [];
  if (state.similar !== null) chips.push(chip(state.similar, "similar"));
  for (const id of state.likes) chips.push(chip(id, "like"));
  for (const id of state.dislikes) chips.push(chip(id, "dislike"));
  $("chips").replaceChildren(...chips);
  $("refine").hidden = chips.length === 0;
  $("query-image").hidden = !state.image;
  if (state.image) $("query-image-thumb").src = state.imageURL;
}

// ------------------------------------------------------------------ refine, similar, image
function like(id) {
  state.dislikes = state.dislikes.filter((v) => v !== id);
  if (!state.likes.includes(id)) state.likes.push(id);
  search({ push: true });
}

function dislike(id) {
  state.likes = state.likes.filter((v) => v !== id);
  if (!state.dislikes.includes(id)) state.dislikes.push(id);
  search({ push: true });
}

function moreLike(id) {
  closeDetail();
  state.similar = id; state.q = ""; state.likes = []; state.dislikes = [];
  clearImage(false);
  $("q").value = "";
  search({ push: true });
  window.scrollTo({ top: 0 });
}

function setImage(file) {
  if (!file || !file.type.startsWith("image/")) { setError("That is not an image file."); return; }
  clearImage(false);
  state.image = file;
  state.imageURL = URL.createObjectURL(file);
  state.similar = null; state.likes = []; state.dislikes = [];
  search({ push: true });
}

function clearImage(rerun = true) {
  if (state.imageURL) URL.revokeObjectURL(state.imageURL);
  state.image = null; state.imageURL = null;
  if (rerun) search({ push: true });
}

// ------------------------------------------------------------------ detail view
async function openDetail(index) {
  const hit = state.hits[index];
  if (!hit) return;
  state.detail = index;
  const dlg = $("detail");
  $("detail-img").src = `/api/items/${hit.id}/thumbnail?size=512`;
  $("detail-img").alt = hit.name;
  $("detail-name").textContent = hit.name;
  setOpenLink(hit);
  $("detail-like").classList.toggle("on", state.likes.includes(hit.id));
  $("detail-dislike").classList.toggle("on", state.dislikes.includes(hit.id));
  renderMeta([["score", hit.score.toFixed(4)], ["size", hit.width ? `${hit.width} × ${hit.height}` : "?"]]);
  showFaces(hit.id, index);
  if (!dlg.open) dlg.showModal();
  try {
    const item = await api(`/api/items/${hit.id}`);
    if (state.detail !== index) return;
    renderMeta(detailRows(hit, item));
  } catch (err) { setError(err.message); }
}

// The detail view's facts: the item's own (where it lives depends on its kind), then its
// caption and the table columns stored with it.
function detailRows(hit, item) {
  const rows = [["score", hit.score.toFixed(4)], ["size", item.width ? `${item.width} × ${item.height}` : "?"]];
  if (item.size >= 0) rows.push(["file", `${(item.size / 1024).toFixed(0)} KB`]);
  if (item.kind === "url") {
    rows.push(["url", item.path]);
  } else if (item.kind === "member") {
    const at = item.path.lastIndexOf("#");
    rows.push(["shard", item.path.slice(0, at)], ["member", item.path.slice(at + 1)]);
  } else {
    rows.push(["modified", new Date(item.modified).toLocaleString()], ["folder", item.folder]);
  }
  rows.push(["id", String(item.id)]);
  const meta = item.metadata || {};
  if (item.caption) rows.push(["caption", item.caption]);
  for (const key of Object.keys(meta).sort()) {
    if (key !== "caption") rows.push([key, String(meta[key])]);
  }
  return rows;
}

// "Original" opens the file the server serves (a tar member's bytes); a URL item opens its
// source URL itself (the server holds only a downloaded, possibly resized, copy).
function setOpenLink(hit) {
  const open = $("detail-open");
  const isURL = hit.kind === "url";
  open.href = isURL ? hit.path : hit.image;
  open.textContent = isURL ? "Source" : "Original";
  open.title = isURL ? hit.path : "The original image";
  open.rel = isURL ? "noopener noreferrer" : "noopener";
}

// ------------------------------------------------------------------ faces in the detail view
// Outlines of the faces found in the item (GET /api/items/{id}/faces), each with its person's
// label. Boxes are in the original's upright pixels; the overlay covers exactly the image as
// shown, so they are placed in percent of the original's width and height.
const faceView = { item: null, width: 0, height: 0, faces: [] };

async function showFaces(id, index) {
  faceView.item = id; faceView.faces = [];
  $("detail-faces").replaceChildren();
  let res;
  try { res = await api(`/api/items/${id}/faces`); } catch (_) { return; }  // no faces is no outline, not an error
  if (state.detail !== index || !res.width || !res.height) return;
  Object.assign(faceView, { width: res.width, height: res.height, faces: res.faces });
  $("detail-faces").replaceChildren(...res.faces.map(faceBox));
  placeFaces();
}

function faceBox(f) {
  const [l, t, r, b] = f.box;
  const label = f.person_label || "unknown";
  const box = document.createElement(f.person_id !== null ? "a" : "span");
  box.className = `face-box${f.person_id !== null ? "" : " unknown"}`;
  if (f.person_id !== null) { box.href = `/people?person=${f.person_id}`; box.title = `${label}: open on the People page`; }
  box.dataset.face = String(f.id);
  box.style.left = `${(100 * l) / faceView.width}%`;
  box.style.top = `${(100 * t) / faceView.height}%`;
  box.style.width = `${(100 * (r - l)) / faceView.width}%`;
  box.style.height = `${(100 * (b - t)) / faceView.height}%`;
  const tag = document.createElement("span");
  tag.className = "face-label";
  tag.textContent = label;
  box.append(tag);
  return box;
}

// Lay the overlay over the image as displayed (object-fit: contain may leave bars around it).
function placeFaces() {
  const img = $("detail-img"), overlay = $("detail-faces");
  if (!img.complete || !img.naturalWidth) { overlay.hidden = true; return; }
  const scale = Math.min(img.clientWidth / img.naturalWidth, img.clientHeight / img.naturalHeight);
  const w = img.naturalWidth * scale, h = img.naturalHeight * scale;
  Object.assign(overlay.style, { left: `${img.offsetLeft + (img.clientWidth - w) / 2}px`,
    top: `${img.offsetTop + (img.clientHeight - h) / 2}px`, width: `${w}px`, height: `${h}px` });
  overlay.hidden = faceView.faces.length === 0;
}

function renderMeta(rows) {
  const dl = $("detail-meta");
  dl.replaceChildren();
  for (const [k, v] of rows) {
    const dt = document.createElement("dt"); dt.textContent = k;
    const dd = document.createElement("dd"); dd.textContent = v;
    dl.append(dt, dd);
  }
}

function closeDetail() {
  const dlg = $("detail");
  if (dlg.open) dlg.close();
}

function currentDetailId() {
  const hit = state.hits[state.detail];
  return hit ? hit.id : null;
}

// ------------------------------------------------------------------ keyboard
function columns() {
  const cards = $("grid").children;
  if (cards.length < 2) return 1;
  const top = cards[0].offsetTop;
  let n = 0;
  while (n < cards.length && cards[n].offsetTop === top) n++;
  return Math.max(1, n);
}

function focusCard(i) {
  const cards = $("grid").children;
  if (!cards.length) return;
  const el = cards[Math.max(0, Math.min(cards.length - 1, i))];
  el.focus();
  el.scrollIntoView({ block: "nearest" });
}

function onKey(e) {
  const typing = e.target === $("q");
  const dlgOpen = $("detail").open;
  if (e.key === "/" && !typing) { e.preventDefault(); $("q").focus(); $("q").select(); return; }
  if (typing) {
    if (e.key === "ArrowDown" && state.hits.length) { e.preventDefault(); focusCard(0); }
    return;
  }
  if (dlgOpen) {
    const id = currentDetailId();
    if (e.key === "ArrowRight") { e.preventDefault(); openDetail(Math.min(state.hits.length - 1, state.detail + 1)); }
    else if (e.key === "ArrowLeft") { e.preventDefault(); openDetail(Math.max(0, state.detail - 1)); }
    else if (id !== null && (e.key === "l" || e.key === "L")) { closeDetail(); like(id); }
    else if (id !== null && (e.key === "d" || e.key === "D")) { closeDetail(); dislike(id); }
    else if (id !== null && (e.key === "m" || e.key === "M")) moreLike(id);
    return;
  }
  const card = e.target.closest && e.target.closest(".card");
  if (!card) return;
  const i = parseInt(card.dataset.index, 10);
  const id = parseInt(card.dataset.id, 10);
  const cols = columns();
  const moves = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: cols, ArrowUp: -cols };
  if (e.key in moves) {
    e.preventDefault();
    if (e.key === "ArrowUp" && i < cols) { $("q").focus(); return; }
    focusCard(i + moves[e.key]);
  } else if (e.key === "Enter" || e.key === " ") { e.preventDefault(); openDetail(i); }
  else if (e.key === "l" || e.key === "L") like(id);
  else if (e.key === "d" || e.key === "D") dislike(id);
  else if (e.key === "m" || e.key === "M") moreLike(id);
}

// ------------------------------------------------------------------ infinite scroll, drop, paste
function nearBottom() {
  const more = $("more").getBoundingClientRect();
  return more.top < window.innerHeight + 600;
}

function wire() {
  $("search-form").addEventListener("submit", (e) => { e.preventDefault(); clearTimeout(timer); search({ push: true }); });
  $("q").addEventListener("input", () => { state.q = $("q").value; searchSoon(); });
  $("pick-image").addEventListener("click", () => $("file").click());
  $("file").addEventListener("change", () => { if ($("file").files[0]) setImage($("file").files[0]); $("file").value = ""; });
  $("query-image-clear").addEventListener("click", () => clearImage());
  $("clear-refine").addEventListener("click", () => { state.similar = null; state.likes = []; state.dislikes = []; search({ push: true }); });
  $("detail-close").addEventListener("click", closeDetail);
  $("detail-img").addEventListener("load", placeFaces);
  window.addEventListener("resize", placeFaces);
  $("detail").addEventListener("close", () => {
    const cards = $("grid").children;
    if (state.detail >= 0 && cards[state.detail]) cards[state.detail].focus({ preventScroll: true });
    state.detail = -1;
  });
  $("detail").addEventListener("click", (e) => { if (e.target === $("detail")) closeDetail(); });
  $("detail-similar").addEventListener("click", () => { const id = currentDetailId(); if (id !== null) moreLike(id); });
  $("detail-like").addEventListener("click", () => { const id = currentDetailId(); if (id !== null) { closeDetail(); like(id); } });
  $("detail-dislike").addEventListener("click", () => { const id = currentDetailId(); if (id !== null) { closeDetail(); dislike(id); } });
  document.addEventListener("keydown", onKey);
  window.addEventListener("popstate", () => { readURL(); clearImage(false); search(); });

  new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting) && state.hasMore) search({ append: true });
  }, { rootMargin: "600px" }).observe($("more"));

  let depth = 0;
  const drop = $("drop");
  const hasFiles = (e) => e.dataTransfer && Array.from(e.dataTransfer.types || []).includes("Files");
  window.addEventListener("dragenter", (e) => { if (hasFiles(e)) { depth++; drop.hidden = false; } });
  window.addEventListener("dragleave", () => { depth = Math.max(0, depth - 1); if (!depth) drop.hidden = true; });
  window.addEventListener("dragover", (e) => { if (hasFiles(e)) e.preventDefault(); });
  window.addEventListener("drop", (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault(); depth = 0; drop.hidden = true;
    const file = Array.from(e.dataTransfer.files).find((f) => f.type.startsWith("image/"));
    if (file) setImage(file); else setError("Drop an image file (JPEG, PNG, WebP…).");
  });
  window.addEventListener("paste", (e) => {
    const item = Array.from((e.clipboardData || {}).items || []).find((i) => i.type.startsWith("image/"));
    if (item) { e.preventDefault(); setImage(item.getAsFile()); }
  });
}

async function start() {
  wire();
  readURL();
  try { state.info = await api("/api/info"); } catch (err) { setError(err.message); }
  if (state.info && !state.info.text_search) $("q").placeholder = "Drop, paste or pick an image to search by it…";
  if (state.info) searchFilters.setKeys(state.info.metadata_keys);
  searchFilters.init(() => search({ push: true })).catch((err) => setError(err.message));
  search();
}

start();
