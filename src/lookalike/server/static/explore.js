// Shared by the Map and Clusters pages (after common.js): item tiles, the item detail view,
// the similarity-matrix view and the error banner. Plain JavaScript; globals of both pages.
"use strict";

const $ = (id) => document.getElementById(id);

function setError(msg) {
  const el = $("error");
  el.hidden = !msg;
  el.textContent = msg || "";
}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k in node) node[k] = v;
    else node.setAttribute(k, v);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

// A grid tile for an item ({id, name?, score?}); Enter, Space or a click opens its detail.
function tile(item, open) {
  const name = item.name || `#${item.id}`;
  const img = el("img", { loading: "lazy", decoding: "async", alt: name, src: `/api/items/${item.id}/thumbnail?size=256` });
  img.addEventListener("load", () => img.classList.add("loaded"));
  const li = el("li", { class: "card", tabIndex: 0, dataset: { id: String(item.id) },
    "aria-label": item.score !== undefined ? `${name}, score ${item.score.toFixed(3)}` : name },
  img, item.score !== undefined ? el("span", { class: "score", textContent: item.score.toFixed(3) }) : null,
  el("div", { class: "name", textContent: name }));
  li.addEventListener("click", () => open(item.id));
  li.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); open(item.id); } });
  return li;
}

// Arrow keys move between the tiles of a grid.
function gridKeys(grid) {
  grid.addEventListener("keydown", (e) => {
    const card = e.target.closest(".card");
    if (!card) return;
    const cards = Array.from(grid.children);
    const i = cards.indexOf(card);
    let cols = 1;
    while (cols < cards.length && cards[cols].offsetTop === cards[0].offsetTop) cols++;
    const to = { ArrowRight: i + 1, ArrowLeft: i - 1, ArrowDown: i + cols, ArrowUp: i - cols }[e.key];
    if (to !== undefined && cards[to]) { e.preventDefault(); cards[to].focus(); }
  });
}

// ------------------------------------------------------------------ the detail view
function detailDialog() {
  let dlg = $("detail");
  if (dlg) return dlg;
  dlg = el("dialog", { class: "detail", id: "detail", "aria-label": "Image details" },
    el("div", { class: "detail-body" },
      el("figure", { class: "detail-figure" }, el("img", { id: "detail-img", alt: "" })),
      el("aside", { class: "detail-side" },
        el("h2", { id: "detail-name" }), el("dl", { id: "detail-meta" }),
        el("div", { class: "detail-actions" },
          el("a", { class: "btn primary", id: "detail-similar", textContent: "More like this" }),
          el("a", { class: "btn", id: "detail-open", target: "_blank", rel: "noopener", textContent: "Original" })),
        el("p", { class: "hint", textContent: "Esc closes" })),
      el("button", { type: "button", class: "close", id: "detail-close", "aria-label": "Close", textContent: "×",
        onclick: () => dlg.close() })));
  dlg.addEventListener("click", (e) => { if (e.target === dlg) dlg.close(); });
  document.body.append(dlg);
  return dlg;
}

async function openItem(id, extra = []) {
  const dlg = detailDialog();
  const back = document.activeElement;
  dlg.addEventListener("close", () => { if (back && back.focus) back.focus({ preventScroll: true }); }, { once: true });
  $("detail-img").src = `/api/items/${id}/thumbnail?size=512`;
  $("detail-name").textContent = `#${id}`;
  $("detail-similar").href = `/?similar=${id}`;
  $("detail-open").href = `/api/items/${id}/image`;
  renderMeta(extra);
  if (!dlg.open) dlg.showModal();
  try {
    const item = await api(`/api/items/${id}`);
    $("detail-name").textContent = item.name;
    $("detail-img").alt = item.name;
    renderMeta([...extra, ["size", item.width ? `${item.width} × ${item.height}` : "?"],
      ["file", `${(item.size / 1024).toFixed(0)} KB`], ["modified", new Date(item.modified).toLocaleString()],
      ["folder", item.folder], ["id", String(item.id)]]);
  } catch (err) { setError(err.message); }
}

function renderMeta(rows) {
  $("detail-meta").replaceChildren(...rows.flatMap(([k, v]) => [el("dt", { textContent: k }), el("dd", { textContent: v })]));
}

// ------------------------------------------------------------------ the similarity matrix
// Evenly spaced picks of at most `n` from a list (deterministic, so a matrix can be shown again).
function spread(list, n) {
  if (list.length <= n) return Array.from(list);
  return Array.from({ length: n }, (_, k) => list[Math.floor((k * list.length) / n)]);
}

function heat(v) {  // cosine similarity -> a colour from dark blue (low) through teal to yellow (1)
  const t = Math.max(0, Math.min(1, (v + 0.1) / 1.1));
  const stops = [[13, 8, 135], [84, 2, 163], [139, 10, 165], [185, 50, 137], [219, 92, 104], [244, 136, 73], [254, 188, 43], [240, 249, 33]];
  const x = t * (stops.length - 1), k = Math.min(stops.length - 2, Math.floor(x)), f = x - k;
  return `rgb(${stops[k].map((c, j) => Math.round(c + f * (stops[k + 1][j] - c))).join(",")})`;
}

async function showMatrix(ids) {
  let dlg = $("matrix");
  if (!dlg) {
    dlg = el("dialog", { class: "matrix-dialog", id: "matrix", "aria-labelledby": "matrix-title" },
      el("div", { class: "matrix-head" }, el("h2", { id: "matrix-title", textContent: "Similarity matrix" }),
        el("button", { type: "button", class: "close", "aria-label": "Close", textContent: "×", onclick: () => dlg.close() })),
      el("p", { class: "hint", id: "matrix-caption" }),
      el("div", { class: "matrix-scroll" }, el("table", { class: "matrix", id: "matrix-table" })));
    dlg.addEventListener("click", (e) => { if (e.target === dlg) dlg.close(); });
    document.body.append(dlg);
  }
  $("matrix-table").replaceChildren();
  $("matrix-caption").textContent = "Loading…";
  if (!dlg.open) dlg.showModal();
  try {
    const m = await api(`/api/matrix?ids=${ids.join(",")}`);
    renderMatrix(m);
  } catch (err) { $("matrix-caption").textContent = err.message; }
}

function renderMatrix(m) {
  const n = m.items.length, small = n <= 12;
  const thumb = (it) => el("img", { src: `/api/items/${it.id}/thumbnail?size=128`, alt: it.name, title: it.name,
    loading: "lazy", tabIndex: 0, onclick: () => openItem(it.id),
    onkeydown: (e) => { if (e.key === "Enter") openItem(it.id); } });
  const head = el("tr", {}, el("th", {}), ...m.items.map((it) => el("th", { scope: "col" }, thumb(it))));
  const rows = m.items.map((it, r) => el("tr", {}, el("th", { scope: "row" }, thumb(it)),
    ...m.matrix[r].map((v, c) => {
      const td = el("td", { title: `${it.name} · ${m.items[c].name}: ${v.toFixed(3)}`, textContent: small ? v.toFixed(2) : "" });
      td.style.backgroundColor = heat(v);
      if (v > 0.55) td.classList.add("light");
      return td;
    })));
  const table = $("matrix-table");
  table.classList.toggle("small", small);
  table.replaceChildren(el("thead", {}, head), el("tbody", {}, ...rows));
  let lo = 1;
  for (const row of m.matrix) for (const v of row) lo = Math.min(lo, v);
  $("matrix-caption").textContent = `${n} item${n === 1 ? "" : "s"}: cosine similarity of each pair, ` +
    `from ${lo.toFixed(2)} (dark) to 1 (yellow). Hover a cell for its value; click a thumbnail to open it.`;
}
