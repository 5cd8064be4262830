// lookalike Duplicates page: plain JavaScript, no build step. Talks only to this server's /api.
//
// The histogram is fetched once; moving the threshold slider fetches page 1 of the grouping at
// the new threshold (debounced while dragging, at once on release). The server keeps the last
// grouping, so paging at one threshold is a slice on its side and a small render here.
"use strict";

const PER_PAGE = 20;
const DEBOUNCE_MS = 120;
const $ = (id) => document.getElementById(id);

const state = {
  threshold: null,      // null: the model's default (not written to the URL)
  page: 1,
  histogram: null,
  data: null,           // the last /api/duplicates answer
  actions: false,       // whether this server lets the page act on files
  choices: new Map(),   // group id -> Map(item id -> "keep" | "trash" | "leave"): the user's toggles
  seq: 0,
  controller: null,
};

// Timings of the last fetch + render, for the curious and for the browser test.
const timings = { renders: 0, last: null };
window.lookalikeDupes = timings;

// ------------------------------------------------------------------ URL <-> state
function readURL() {
  const p = new URLSearchParams(location.search);
  const t = parseFloat(p.get("threshold") || "");
  state.threshold = Number.isFinite(t) ? Math.min(1, Math.max(-1, t)) : null;
  const page = parseInt(p.get("page") || "", 10);
  state.page = Number.isFinite(page) && page >= 1 ? page : 1;
}

function writeURL(push) {
  const p = new URLSearchParams();
  if (state.threshold !== null) p.set("threshold", state.threshold.toFixed(3));
  if (state.page > 1) p.set("page", String(state.page));
  setURL(p, push);
}

function listURL() {
  const p = new URLSearchParams({ page: String(state.page), per_page: String(PER_PAGE) });
  if (state.threshold !== null) p.set("threshold", state.threshold.toFixed(3));
  return `/api/duplicates?${p}`;
}

// ------------------------------------------------------------------ loading a page of groups
async function load({ push = false } = {}) {
  writeURL(push);
  if (state.controller) state.controller.abort();
  state.controller = new AbortController();
  const seq = ++state.seq;
  const t0 = performance.now();
  document.body.setAttribute("aria-busy", "true");
  try {
    const data = await api(listURL(), { signal: state.controller.signal });
    if (seq !== state.seq) return;
    const t1 = performance.now();
    if (data.total_groups && state.page > data.pages) {  // past the end (the threshold moved): the last page
      state.page = data.pages;
      load();
      return;
    }
    state.data = data;
    setActions(data.actions_allowed);
    setError(null);
    render();
    const t2 = performance.now();
    timings.renders += 1;
    timings.last = { page: data.page, threshold: data.threshold, groups: data.groups.length,
                     fetch_ms: t1 - t0, render_ms: t2 - t1, total_ms: t2 - t0, server_ms: data.took_ms };
    document.body.dataset.renders = String(timings.renders);
  } catch (err) {
    if (err.name === "AbortError" || seq !== state.seq) return;
    setError(err.message);
  } finally {
    if (seq === state.seq) document.body.removeAttribute("aria-busy");
  }
}

let timer = null;
function loadSoon() {
  clearTimeout(timer);
  timer = setTimeout(() => load(), DEBOUNCE_MS);
}

// ------------------------------------------------------------------ rendering
function setError(msg) {
  $("error").hidden = !msg;
  $("error").textContent = msg || "";
}

function setNotice(nodes) {
  $("notice").hidden = !nodes;
  $("notice").replaceChildren(...(nodes || []));
}

function setActions(allowed) {
  state.actions = Boolean(allowed);
  $("apply").hidden = !state.actions;
  $("read-only").hidden = state.actions;
}

function el(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined) e.textContent = text;
  return e;
}

function bytes(n) {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(n < 10 && i ? 1 : 0)} ${units[i]}`;
}

function render() {
  const data = state.data;
  const threshold = data.threshold ?? currentThreshold();
  if (state.threshold === null) setSlider(threshold);
  $("threshold-value").textContent = threshold.toFixed(3);
  const n = data.total_groups;
  $("summary").textContent = `${n.toLocaleString()} group${n === 1 ? "" : "s"} · ` +
    `${data.total_files.toLocaleString()} files · ${data.took_ms.toFixed(0)} ms`;
  $("count").textContent = `${n.toLocaleString()} group${n === 1 ? "" : "s"}`;
  $("groups").replaceChildren(...data.groups.map(groupView));
  $("empty").hidden = n > 0;
  renderPager($("pager-top"));
  renderPager($("pager-bottom"));
  updateApply();
  drawHistogram();
}

function choicesOf(group) {
  // The user's toggles for this group, if they still fit its members; else the keep rule's.
  const ids = new Set(group.members.map((m) => m.id));
  const saved = state.choices.get(group.id);
  if (saved && saved.size === ids.size && [...saved.keys()].every((id) => ids.has(id)) &&
      [...saved.values()].includes("keep")) return saved;
  const fresh = new Map(group.members.map((m) => [m.id, m.keep ? "keep" : m.reference ? "leave" : "trash"]));
  state.choices.set(group.id, fresh);
  return fresh;
}

function groupView(group, index) {
  const li = el("li", "group");
  li.dataset.id = String(group.id);
  const head = el("div", "group-head");
  const number = (state.data.page - 1) * state.data.per_page + index + 1;
  head.append(el("strong", "", `Group ${number.toLocaleString()}`),
              el("span", "", `${group.members.length} files`),
              el("span", `badge ${group.tier}`, group.tier));
  if (group.kind === "burst") head.append(el("span", "badge burst", "burst"));
  head.append(el("span", "", `similarity ≥ ${group.similarity.toFixed(3)}`));
  const members = el("div", "members");
  const choices = choicesOf(group);
  for (const m of group.members) members.append(memberView(group, m, choices));
  li.append(head, members);
  return li;
}

function memberView(group, m, choices) {
  const fig = el("figure", "member");
  fig.dataset.id = String(m.id);
  const link = el("a", "thumb");
  link.href = m.image;
  link.target = "_blank";
  link.rel = "noopener";
  const img = el("img");
  img.loading = "lazy";
  img.decoding = "async";
  img.alt = m.name;
  img.src = m.thumbnail;
  link.append(img);
  const cap = el("figcaption");
  const name = el("span", "name", m.name);
  name.title = m.path;
  const when = m.taken || m.modified;
  const meta = el("span", "meta", `${m.width && m.height ? `${m.width} × ${m.height}` : "?"} · ${bytes(m.size)}`);
  const date = el("span", "meta", `${m.taken ? "taken" : "modified"} ${new Date(when).toLocaleDateString()}`);
  date.title = new Date(when).toLocaleString();
  const folder = el("span", "folder", m.folder);
  folder.title = m.folder;
  const tags = el("span", "meta", `${m.similarity.toFixed(3)} · ${m.tier}`);
  if (m.reference) tags.append(" ", el("span", "badge reference", "reference"));
  const toggles = el("div", "toggles");
  const keep = el("button", "toggle keep", "Keep");
  const trash = el("button", "toggle trash", "Trash");
  for (const b of [keep, trash]) b.type = "button";
  keep.addEventListener("click", () => toggle(group, m.id, "keep"));
  trash.addEventListener("click", () => toggle(group, m.id, "trash"));
  toggles.append(keep, trash);
  cap.append(name, meta, date, folder, tags, toggles);
  fig.append(link, cap);
  paintMember(fig, m, choices);
  return fig;
}

function paintMember(fig, m, choices) {
  const choice = choices.get(m.id);
  const keeps = [...choices.values()].filter((c) => c === "keep").length;
  fig.classList.toggle("keep", choice === "keep");
  fig.classList.toggle("trash", choice === "trash");
  const [keep, trash] = fig.querySelectorAll(".toggle");
  keep.setAttribute("aria-pressed", String(choice === "keep"));
  trash.setAttribute("aria-pressed", String(choice === "trash"));
  const lastKeep = choice === "keep" && keeps === 1;  // a group always keeps one file
  keep.disabled = !state.actions || lastKeep;
  trash.disabled = !state.actions || m.reference || lastKeep;
  keep.title = lastKeep ? "The only file kept: keep another one first" : "Keep this file";
  trash.title = m.reference ? "In a reference folder: never acted on" : "Move this file to quarantine";
}

function toggle(group, id, what) {
  if (!state.actions) return;
  const choices = choicesOf(group);
  const now = choices.get(id);
  choices.set(id, now === what ? "leave" : what);
  if (![...choices.values()].includes("keep")) choices.set(id, now);  // never leave a group with nothing kept
  const li = $("groups").querySelector(`.group[data-id="${group.id}"]`);
  for (const m of group.members) paintMember(li.querySelector(`.member[data-id="${m.id}"]`), m, choices);
  updateApply();
}

function pageChoices() {
  // The groups shown, with what to keep and to trash; groups with nothing to trash are left out.
  const out = [];
  for (const group of state.data ? state.data.groups : []) {
    const choices = choicesOf(group);
    const pick = (c) => group.members.filter((m) => choices.get(m.id) === c).map((m) => m.id);
    const trash = pick("trash");
    if (trash.length) out.push({ id: group.id, keep: pick("keep"), trash });
  }
  return out;
}

function updateApply() {
  const n = pageChoices().reduce((sum, g) => sum + g.trash.length, 0);
  $("apply").disabled = !state.actions || n === 0;
  $("apply").textContent = n ? `Move ${n} file${n === 1 ? "" : "s"} on this page to quarantine`
                             : "Nothing to move on this page";
}

// ------------------------------------------------------------------ paging
function pageLink(page, label, current) {
  const a = el("a", "", label);
  const p = new URLSearchParams(location.search);
  if (page > 1) p.set("page", String(page)); else p.delete("page");
  a.href = p.toString() ? `?${p}` : location.pathname;
  if (current) a.setAttribute("aria-current", "page");
  a.addEventListener("click", (e) => { e.preventDefault(); goTo(page); });
  return a;
}

function renderPager(nav) {
  const data = state.data;
  const pages = data.pages;
  if (!data.total_groups || pages <= 1) { nav.replaceChildren(); return; }
  const cur = data.page;
  const items = [];
  const prev = pageLink(Math.max(1, cur - 1), "‹ Prev");
  prev.rel = "prev";
  if (cur === 1) prev.setAttribute("aria-disabled", "true");
  items.push(prev);
  const wanted = new Set([1, 2, pages - 1, pages]);
  for (let p = cur - 2; p <= cur + 2; p++) wanted.add(p);
  let last = 0;
  for (const p of [...wanted].filter((p) => p >= 1 && p <= pages).sort((a, b) => a - b)) {
    if (p > last + 1) items.push(el("span", "gap", "…"));
    items.push(pageLink(p, p.toLocaleString(), p === cur));
    last = p;
  }
  const next = pageLink(Math.min(pages, cur + 1), "Next ›");
  next.rel = "next";
  if (cur === pages) next.setAttribute("aria-disabled", "true");
  items.push(next);
  if (pages > 7) items.push(gotoBox(pages));
  nav.replaceChildren(...items);
}

function gotoBox(pages) {
  // Any page by number: with thousands of groups the links above cannot name them all.
  const form = el("form", "goto");
  const input = el("input");
  input.type = "number";
  input.min = "1";
  input.max = String(pages);
  input.placeholder = "page";
  input.setAttribute("aria-label", `Go to page (1 to ${pages.toLocaleString()})`);
  form.append(input);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const page = parseInt(input.value, 10);
    if (Number.isFinite(page)) goTo(Math.min(pages, Math.max(1, page)));
  });
  return form;
}

function goTo(page) {
  state.page = page;
  load({ push: true });
  window.scrollTo({ top: 0 });
}

// ------------------------------------------------------------------ histogram and slider
function setSlider(value) {
  const s = $("threshold");
  s.value = String(value);
}

function drawHistogram() {
  const h = state.histogram;
  const canvas = $("histogram");
  const ratio = window.devicePixelRatio || 1;
  const width = Math.max(200, canvas.clientWidth);
  const height = canvas.clientHeight || 120;
  if (canvas.width !== Math.round(width * ratio)) canvas.width = Math.round(width * ratio);
  if (canvas.height !== Math.round(height * ratio)) canvas.height = Math.round(height * ratio);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  if (!h || !h.counts.length) return;
  const style = getComputedStyle(document.documentElement);
  const colour = (name) => style.getPropertyValue(name).trim();
  const lo = h.edges[0];
  const hi = h.edges[h.edges.length - 1];
  const x = (v) => ((v - lo) / (hi - lo || 1)) * width;
  const top = Math.log1p(Math.max(...h.counts)) || 1;
  const plot = height - 16;
  const threshold = currentThreshold();
  for (let i = 0; i < h.counts.length; i++) {
    const x0 = x(h.edges[i]);
    const x1 = x(h.edges[i + 1]);
    const barH = (Math.log1p(h.counts[i]) / top) * (plot - 4);
    ctx.fillStyle = h.edges[i] >= threshold ? colour("--accent") : colour("--line");
    ctx.fillRect(x0 + 0.5, plot - barH, Math.max(1, x1 - x0 - 1), barH);
  }
  ctx.fillStyle = colour("--muted");
  ctx.font = "11px system-ui, sans-serif";
  ctx.textBaseline = "bottom";
  ctx.textAlign = "left";
  ctx.fillText(lo.toFixed(2), 2, height);
  ctx.textAlign = "right";
  ctx.fillText(hi.toFixed(2), width - 2, height);
  for (const [value, name, dash] of [[h.default_threshold, "--muted", [3, 3]], [threshold, "--accent-2", []]]) {
    if (value < lo || value > hi) continue;
    ctx.strokeStyle = colour(name);
    ctx.lineWidth = 2;
    ctx.setLineDash(dash);
    ctx.beginPath();
    ctx.moveTo(x(value), 0);
    ctx.lineTo(x(value), plot);
    ctx.stroke();
  }
  ctx.setLineDash([]);
}

function currentThreshold() {
  if (state.threshold !== null) return state.threshold;
  if (state.data) return state.data.threshold;
  return state.histogram ? state.histogram.default_threshold : 1;
}

function pairsAbove(value) {
  // Nearest-neighbour pairs at or above ``value``: the histogram's count at the nearest edge below.
  const h = state.histogram;
  if (!h) return null;
  let i = 0;
  while (i + 1 < h.edges.length && h.edges[i + 1] <= value) i++;
  return h.pairs_above[i];
}

function onSlide(immediate) {
  state.threshold = parseFloat($("threshold").value);
  state.page = 1;
  $("threshold-value").textContent = state.threshold.toFixed(3);
  const pairs = pairsAbove(state.threshold);
  if (pairs !== null) $("summary").textContent = `≈ ${pairs.toLocaleString()} close pairs · regrouping…`;
  drawHistogram();
  if (immediate) { clearTimeout(timer); load(); } else loadSoon();
}

async function loadHistogram() {
  try {
    const h = await api("/api/duplicates/histogram?bins=60");
    state.histogram = h;
    const s = $("threshold");
    const lo = h.edges[0];
    const hi = h.edges[h.edges.length - 1];
    s.min = String(Math.min(lo, h.default_threshold).toFixed(3));
    s.max = String(Math.max(hi, h.default_threshold).toFixed(3));
    s.disabled = false;
    setSlider(currentThreshold());
    $("threshold-default").textContent = `model default (${h.default_threshold.toFixed(3)})`;
    drawHistogram();
  } catch (err) { setError(err.message); }
}

function thresholdAt(event) {
  const h = state.histogram;
  if (!h) return null;
  const r = $("histogram").getBoundingClientRect();
  const lo = h.edges[0];
  const hi = h.edges[h.edges.length - 1];
  return Math.round((lo + ((event.clientX - r.left) / r.width) * (hi - lo)) * 1000) / 1000;
}

// ------------------------------------------------------------------ apply (with --allow-actions)
async function resolve(apply) {
  return api("/api/duplicates/resolve", {
    method: "POST", headers: { "content-type": "application/json" },
    // The settings the page was listed with, so the server finds the groups it already holds.
    body: JSON.stringify({ settings: state.threshold === null ? {} : { threshold: Number(state.threshold.toFixed(3)) },
                           action: "move",
                           groups: pageChoices(), apply }),
  });
}

async function planApply() {
  setNotice(null);
  try {
    const plan = await resolve(false);
    const moves = plan.steps.length;
    $("plan-title").textContent = `Move ${moves} file${moves === 1 ? "" : "s"} to quarantine?`;
    $("plan-text").textContent = `They go to ${plan.quarantine}, keeping their folders below it.` +
      (plan.skipped.length ? ` ${plan.skipped.length} will be left alone.` : "");
    const list = [];
    for (const s of plan.steps.slice(0, 200)) list.push(el("li", "", `${s.path} → ${s.target}`));
    for (const s of plan.skipped.slice(0, 50)) list.push(el("li", "skip", `${s.step.path}: ${s.reason}`));
    $("plan-steps").replaceChildren(...list);
    $("plan-confirm").disabled = moves === 0;
    $("plan").showModal();
  } catch (err) { setError(err.message); }
}

async function confirmApply() {
  $("plan-confirm").disabled = true;
  try {
    const report = await resolve(true);
    $("plan").close();
    const parts = [el("span", "", `Moved ${report.done} file${report.done === 1 ? "" : "s"} ` +
                                 `(${bytes(report.bytes_freed)}) to ${report.quarantine}.`)];
    if (report.failed.length) parts.push(el("span", "", ` ${report.failed.length} failed: ${report.failed[0].reason}`));
    if (report.journal) parts.push(" Undo with ", el("code", "", `lookalike dupes --undo ${report.journal}`));
    setNotice(parts);
    state.choices.clear();
    await load();
  } catch (err) {
    $("plan").close();
    setError(err.message);
  }
}

// ------------------------------------------------------------------ start
function wire() {
  const slider = $("threshold");
  slider.addEventListener("input", () => onSlide(false));
  slider.addEventListener("change", () => onSlide(true));
  $("threshold-default").addEventListener("click", () => {
    state.threshold = null; state.page = 1;
    if (state.histogram) setSlider(state.histogram.default_threshold);
    load({ push: true });
  });
  $("histogram").addEventListener("click", (e) => {
    const t = thresholdAt(e);
    if (t === null) return;
    setSlider(t);
    onSlide(true);
  });
  $("apply").addEventListener("click", planApply);
  $("plan-confirm").addEventListener("click", confirmApply);
  window.addEventListener("popstate", () => { readURL(); if (state.histogram) setSlider(currentThreshold()); load(); });
  window.addEventListener("resize", drawHistogram);
  document.addEventListener("keydown", (e) => {
    if (e.target.closest && e.target.closest("input, textarea, dialog")) return;
    if (!state.data) return;
    if (e.key === "ArrowRight" && state.data.page < state.data.pages) goTo(state.data.page + 1);
    else if (e.key === "ArrowLeft" && state.data.page > 1) goTo(state.data.page - 1);
  });
}

async function start() {
  wire();
  readURL();
  await Promise.all([loadHistogram(), load()]);
  setSlider(currentThreshold());
  drawHistogram();
}

start();
