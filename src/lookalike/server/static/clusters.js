// The Clusters page: every cluster with its name, size and most central images; one opens
// to its members, closest to the centre first, a page at a time.
"use strict";

const PER_PAGE = 48;
const MOSAIC = 6;  // central thumbnails per cluster card

const view = { cluster: null, offset: 0, loading: false };

function readURL() {
  const c = parseInt(new URLSearchParams(location.search).get("cluster") || "", 10);
  view.cluster = Number.isFinite(c) ? c : null;
}

async function show() {
  setError(null);
  $("overview").hidden = view.cluster !== null;
  $("members").hidden = view.cluster === null;
  if (view.cluster === null) await overview(); else await members(true);
}

// ------------------------------------------------------------------ all clusters
async function overview() {
  let c;
  try {
    c = await api("/api/clusters");
  } catch (err) {
    $("overview").hidden = true;
    if (err.status === 404) {
      $("empty").hidden = false;
      $("empty-text").textContent = `${err.message.replace(/, or POST \/api\/clusters$/, "")}. Or cluster it here:`;
      $("compute").hidden = false;
      $("empty").append($("compute"));
    } else setError(err.message);
    return;
  }
  $("empty").hidden = true;
  $("compute").hidden = true;
  const how = { given: `k = ${c.k} as given`, silhouette: `k = ${c.k}, chosen by silhouette over k = ${Object.keys(c.k_scores).join(", ")}`,
    density: `${c.k} density clusters` }[c.k_chosen_by] || `k = ${c.k}`;
  $("overview-title").textContent = `${c.k} cluster${c.k === 1 ? "" : "s"}`;
  $("overview-note").textContent = `${c.method === "hdbscan" ? "HDBSCAN" : "k-means"} · ${how}` +
    (c.noise ? ` · ${c.noise.toLocaleString()} in no cluster (noise)` : "") +
    (c.unassigned ? ` · ${c.unassigned.toLocaleString()} not yet assigned` : "");
  const total = c.clusters.reduce((s, x) => s + x.size, 0) + c.noise;
  $("count").textContent = `${total.toLocaleString()} images`;
  const noise = c.noise ? [{ id: -1, name: "noise (in no cluster)", size: c.noise, central: [] }] : [];
  $("clusters").replaceChildren(...c.clusters.concat(noise).map(card));
}

function card(cl) {
  const mosaic = el("div", { class: "mosaic", "aria-hidden": "true" },
    ...cl.central.slice(0, MOSAIC).map((it) => el("img", { src: `/api/items/${it.id}/thumbnail?size=128`, alt: "", loading: "lazy" })),
    ...Array.from({ length: Math.max(0, MOSAIC - cl.central.length) }, () => el("span", { class: "blank" })));
  const open = el("a", { class: "cluster", href: `?cluster=${cl.id}`, dataset: { id: String(cl.id) },
    "aria-label": `${cl.name}: ${cl.size} images`, onclick: (e) => { e.preventDefault(); go(cl.id); } },
  mosaic, el("div", { class: "cluster-name" }, el("span", { textContent: cl.name }),
    el("span", { class: "cluster-size", textContent: cl.size.toLocaleString() })));
  return el("li", {}, open);
}

function go(id) {
  view.cluster = id;
  const p = new URLSearchParams();
  if (id !== null) p.set("cluster", String(id));
  setURL(p, true);
  window.scrollTo({ top: 0 });
  show();
}

// ------------------------------------------------------------------ one cluster's members
async function members(first) {
  if (view.loading) return;
  view.loading = true;
  if (first) { view.offset = 0; $("members-grid").replaceChildren(); }
  try {
    const res = await api(`/api/clusters/${view.cluster}/members?offset=${view.offset}&limit=${PER_PAGE}`);
    $("members-title").textContent = `${res.name} · ${res.size.toLocaleString()} images`;
    $("search-within").href = `/?cluster=${res.cluster}`;
    const noise = res.cluster === -1;  // no centre: members by id, no score
    const tiles = res.hits.map((h) => tile(noise ? { id: h.id, name: h.name } : h,
      (id) => openItem(id, noise ? [["cluster", res.name]] : [["cluster", res.name], ["closeness", h.score.toFixed(4)]])));
    $("members-grid").append(...tiles);
    if (first && tiles.length) tiles[0].focus({ preventScroll: true });
    view.offset += res.hits.length;
    $("more").hidden = !res.has_more;
    $("count").textContent = `${view.offset.toLocaleString()} of ${res.size.toLocaleString()}`;
  } catch (err) {
    setError(err.message);
  } finally {
    view.loading = false;
  }
}

async function compute(e) {
  e.preventDefault();
  const btn = $("compute-go");
  const k = parseInt($("k").value, 10);
  const body = { method: $("method").value };
  if (Number.isFinite(k) && body.method === "kmeans") body.k = k;
  btn.disabled = true;
  btn.textContent = "Clustering…";
  setError(null);
  try {
    await api("/api/clusters", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  } catch (err) {
    if (err.status !== 503) setError(err.message);
    else {
      // Past the request deadline the clustering goes on in the server: ask until it is there.
      while (true) {
        await new Promise((r) => setTimeout(r, 3000));
        try { await api("/api/clusters"); break; } catch (_) { /* not yet */ }
      }
    }
  } finally {
    btn.disabled = false;
    btn.textContent = "Cluster";
  }
  show();
}

function wire() {
  $("more").addEventListener("click", () => members(false));
  $("back").addEventListener("click", (e) => { e.preventDefault(); go(null); });
  $("compute").addEventListener("submit", compute);
  $("method").addEventListener("change", () => { $("k").disabled = $("method").value !== "kmeans"; });
  gridKeys($("members-grid"));
  window.addEventListener("popstate", () => { readURL(); show(); });
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && view.cluster !== null && !document.querySelector("dialog[open]")) go(null);
  });
}

wire();
readURL();
show();
