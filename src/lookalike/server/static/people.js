// The People page (after common.js and explore.js): every person found in the photos, with a
// face crop, an inline rename and merging of the selected cards; one person opens to its faces
// (select some: "Not this person", or "Split into new person") and its photos. Crops come only
// from a server that may show them (a token, or loopback); otherwise the page says why not.
"use strict";

const PEOPLE_PAGE = 120;
const FACES_PAGE = 120;
const PHOTOS_PAGE = 48;

const view = {
  person: null,          // the open person's id, or null for everyone
  people: [],            // the overview's people, in order (most faces first)
  offset: 0,
  selected: new Set(),   // people picked for merging
  faces: [],             // the open person's faces shown so far
  picked: new Set(),     // faces picked for "not this person" / split
  photos: 0,
  crops: true,           // the server shows face crops
  loading: false,
};

function readURL() {
  const p = parseInt(new URLSearchParams(location.search).get("person") || "", 10);
  view.person = Number.isFinite(p) ? p : null;
}

function go(id) {
  view.person = id;
  notice(null);
  const p = new URLSearchParams();
  if (id !== null) p.set("person", String(id));
  setURL(p, true);
  window.scrollTo({ top: 0 });
  show();
}

function notice(msg) {
  const n = $("notice");
  n.hidden = !msg;
  n.textContent = msg || "";
}

function cropsNotice(allowed) {
  view.crops = allowed;
  $("crops-hidden").hidden = allowed;
  $("crops-hidden").textContent = allowed ? "" : "Face crops are hidden: this server listens beyond this machine " +
    "without a token. Serve it with --token (or LOOKALIKE_TOKEN), or on 127.0.0.1, to see them.";
}

async function show() {
  setError(null);
  $("overview").hidden = view.person !== null;
  $("person").hidden = view.person === null;
  $("empty").hidden = true;
  if (view.person === null) await overview(true); else await person(true);
}

// A face's picture: its crop, or (crops hidden) a plain disc with the person's initial.
function face(faceId, label, cls) {
  if (view.crops && faceId !== null && faceId !== undefined) {
    const img = el("img", { class: cls, src: `/api/faces/${faceId}/crop`, alt: label ? `face of ${label}` : "a face",
      loading: "lazy", decoding: "async" });
    img.addEventListener("load", () => img.classList.add("loaded"));
    return img;
  }
  const initial = label && !/^person \d+$/.test(label) ? label.trim()[0].toUpperCase() : "?";
  return el("span", { class: `${cls} no-crop`, textContent: initial, "aria-hidden": "true" });
}

// ------------------------------------------------------------------ everyone
async function overview(first) {
  if (view.loading) return;
  view.loading = true;
  if (first) { view.offset = 0; view.people = []; view.selected.clear(); $("people").replaceChildren(); }
  try {
    const res = await api(`/api/people?offset=${view.offset}&limit=${PEOPLE_PAGE}`);
    cropsNotice(res.crops_allowed);
    if (!res.total && first) { empty(res); return; }
    view.people = view.people.concat(res.people);
    view.offset += res.people.length;
    $("people").append(...res.people.map(card));
    $("more-people").hidden = view.offset >= res.total;
    $("overview-title").textContent = `${res.total.toLocaleString()} ${res.total === 1 ? "person" : "people"}`;
    $("overview-note").textContent = (res.unassigned ? `${res.unassigned.toLocaleString()} more face` +
      `${res.unassigned === 1 ? "" : "s"} in no person (too few alike) · ` : "") +
      "select people to merge them; click a name to rename";
    $("count").textContent = `${res.total.toLocaleString()} ${res.total === 1 ? "person" : "people"}`;
    selection();
  } catch (err) {
    setError(err.message);
  } finally {
    view.loading = false;
  }
}

async function empty(res) {
  $("overview").hidden = true;
  $("empty").hidden = false;
  let name = "COLLECTION";
  try { name = (await api("/api/info")).name; } catch (_) { /* keep the placeholder */ }
  $("empty-text").textContent = res.indexed
    ? `No person yet${res.unassigned ? `: ${res.unassigned} face${res.unassigned === 1 ? "" : "s"} found, too few alike ` +
      "to form one" : ": no faces were found"}. Regroup with \`lookalike people regroup --min-faces 1 --collection ${name}\`.`
    : `Faces have not been looked for in this collection. Run \`lookalike faces index --collection ${name}\`: ` +
      "it finds and groups them on this machine (and `lookalike faces forget` deletes them all).";
}

function counts(p) {
  return `${p.faces.toLocaleString()} face${p.faces === 1 ? "" : "s"} · ` +
    `${p.photos.toLocaleString()} photo${p.photos === 1 ? "" : "s"}`;
}

function card(p) {
  const pick = el("input", { type: "checkbox", class: "pick", "aria-label": `Select ${p.label}`,
    checked: view.selected.has(p.id), onchange: (e) => {
      if (e.target.checked) view.selected.add(p.id); else view.selected.delete(p.id);
      selection();
    } });
  const strip = view.crops && p.sample_faces.length
    ? el("span", { class: "strip", "aria-hidden": "true" }, ...p.sample_faces.map((f) => face(f, p.label, "mini"))) : null;
  const open = el("a", { class: "person-open", href: `?person=${p.id}`, "aria-label": `${p.label}: ${counts(p)}`,
    onclick: (e) => { e.preventDefault(); go(p.id); } }, face(p.cover_face, p.label, "cover"), strip);
  const li = el("li", { class: "person-card", dataset: { id: String(p.id) } }, pick, open,
    nameLine(p, (updated) => li.replaceWith(card(updated))),
    el("div", { class: "person-counts", textContent: counts(p) }));
  li.classList.toggle("selected", view.selected.has(p.id));
  return li;
}

// The person's name as a button that turns into a text field: Enter or leaving it saves,
// Esc cancels. `done` gets the renamed person.
function nameLine(p, done) {
  const btn = el("button", { type: "button", class: `person-name${p.name ? "" : " unnamed"}`, title: "Rename",
    textContent: p.name || `${p.label} · add a name` });
  btn.addEventListener("click", () => rename(btn, p, done));
  return btn;
}

function rename(target, p, done) {
  const input = el("input", { type: "text", class: "rename", value: p.name || "", placeholder: "Name",
    spellcheck: false, autocomplete: "off", "aria-label": `Name of ${p.label}` });
  let finished = false;
  const finish = async (save) => {
    if (finished) return;
    finished = true;
    const name = input.value.trim();
    if (!save || name === (p.name || "")) { input.replaceWith(target); target.focus(); return; }
    input.disabled = true;
    try {
      const updated = await api(`/api/people/${p.id}/name`, { method: "POST",
        headers: { "content-type": "application/json" }, body: JSON.stringify({ name: name || null }) });
      setError(null);
      notice(name ? `Named ${p.label} "${updated.label}".` : `${p.label} has no name any more.`);
      input.replaceWith(target);
      done(updated);
    } catch (err) {
      setError(err.message);
      input.replaceWith(target);
    }
  };
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter") { e.preventDefault(); finish(true); } else if (e.key === "Escape") { e.preventDefault(); e.stopPropagation(); finish(false); }
  });
  input.addEventListener("blur", () => finish(true));
  target.replaceWith(input);
  input.focus();
  input.select();
}

function selection() {
  const n = view.selected.size;
  $("merge").disabled = n < 2;
  $("clear-selection").hidden = n === 0;
  $("selected-count").textContent = n ? `${n} selected` : "";
  for (const li of $("people").children) li.classList.toggle("selected", view.selected.has(parseInt(li.dataset.id, 10)));
}

// Merge the selected people into the first named one among them, else the one with most faces
// (the list is in that order): the name a person gave is never lost to a merge.
async function merge() {
  const chosen = view.people.filter((p) => view.selected.has(p.id));
  if (chosen.length < 2) return;
  const into = chosen.find((p) => p.name) || chosen[0];
  const others = chosen.filter((p) => p !== into).map((p) => p.id);
  $("merge").disabled = true;
  try {
    const merged = await api("/api/people/merge", { method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ into: into.id, others }) });
    setError(null);
    notice(`Merged ${chosen.length} people into ${merged.label} (${counts(merged)}).`);
    await overview(true);
  } catch (err) {
    setError(err.message);
    selection();
  }
}

// ------------------------------------------------------------------ one person
async function person(first) {
  if (view.loading) return;
  view.loading = true;
  if (first) { view.faces = []; view.picked.clear(); view.photos = 0; $("faces").replaceChildren(); $("photos").replaceChildren(); }
  try {
    const res = await api(`/api/people/${view.person}?offset=${view.faces.length}&limit=${FACES_PAGE}`);
    cropsNotice(res.crops_allowed);
    header(res.person);
    view.faces = view.faces.concat(res.faces);
    $("faces").append(...res.faces.map((f) => faceTile(f, res.person)));
    $("more-faces").hidden = !res.has_more;
    picked();
  } catch (err) {
    setError(err.message);
    if (err.status === 404) { view.loading = false; go(null); return; }
  } finally {
    view.loading = false;
  }
  if (first) await photos();
}

function header(p) {
  const old = $("person-name");
  const nameEl = el("span", { id: "person-name", textContent: p.label });
  old.replaceWith(nameEl);
  const again = $("person-rename").cloneNode(true);  // drops the previous person's listener
  $("person-rename").replaceWith(again);
  again.addEventListener("click", () => rename(nameEl, p, (updated) => header(updated)));
  $("person-counts").textContent = counts(p);
  $("person-search").href = `/?person=${p.id}`;
  $("count").textContent = p.label;
  document.title = `${p.label} · People · lookalike`;
}

function faceTile(f, p) {
  const li = el("li", { class: "face", tabIndex: 0, role: "checkbox", "aria-checked": "false",
    "aria-label": `face ${f.id} in ${f.path.split(/[\\/]/).pop()}`, title: f.path, dataset: { id: String(f.id) } },
  face(f.id, p.label, "face-img"), f.manual ? el("span", { class: "pinned", title: "placed by a person", textContent: "●" }) : null);
  const toggle = () => {
    if (view.picked.has(f.id)) view.picked.delete(f.id); else view.picked.add(f.id);
    picked();
  };
  li.addEventListener("click", toggle);
  li.addEventListener("keydown", (e) => { if (e.key === " " || e.key === "Enter") { e.preventDefault(); toggle(); } });
  return li;
}

function picked() {
  const n = view.picked.size;
  $("reject").disabled = $("split").disabled = n === 0;
  $("faces-selected").textContent = n ? `${n} face${n === 1 ? "" : "s"} selected:` : "";
  for (const li of $("faces").children) {
    const on = view.picked.has(parseInt(li.dataset.id, 10));
    li.classList.toggle("selected", on);
    li.setAttribute("aria-checked", String(on));
  }
}

async function photos() {
  try {
    const res = await api(`/api/people/${view.person}/photos?offset=${view.photos}&limit=${PHOTOS_PAGE}`);
    $("photos").append(...res.hits.map((h) => tile(h, (id) => openItem(id))));
    view.photos += res.hits.length;
    $("more-photos").hidden = !res.has_more;
  } catch (err) { setError(err.message); }
}

async function editFaces(action) {
  const faces = Array.from(view.picked);
  if (!faces.length) return;
  const body = { faces };
  const name = $("split-name").value.trim();
  if (action === "split" && name) body.name = name;
  $("reject").disabled = $("split").disabled = true;
  try {
    const res = await api(`/api/people/${view.person}/${action}`, { method: "POST",
      headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    setError(null);
    const n = `${faces.length} face${faces.length === 1 ? "" : "s"}`;
    if (action === "reject" && !res.person) go(null); else await person(true);
    if (action === "split") {
      $("split-name").value = "";
      notice(`${n} moved to a new person, ${res.label}.`);
    } else notice(`${n} will never be put back into this person.`);
  } catch (err) {
    setError(err.message);
    picked();
  }
}

function wire() {
  $("merge").addEventListener("click", merge);
  $("clear-selection").addEventListener("click", () => {
    view.selected.clear();
    for (const box of $("people").querySelectorAll(".pick")) box.checked = false;
    selection();
  });
  $("more-people").addEventListener("click", () => overview(false));
  $("more-faces").addEventListener("click", () => person(false));
  $("more-photos").addEventListener("click", photos);
  $("reject").addEventListener("click", () => editFaces("reject"));
  $("split").addEventListener("click", () => editFaces("split"));
  $("back").addEventListener("click", (e) => { e.preventDefault(); go(null); });
  gridKeys($("photos"));
  window.addEventListener("popstate", () => { readURL(); show(); });
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && view.person !== null && !document.querySelector("dialog[open]")
        && !(e.target instanceof HTMLInputElement)) go(null);
  });
}

wire();
readURL();
show();
