// The search page's label and cluster filters (after common.js, before app.js): two selects,
// filled from GET /api/labels and GET /api/clusters, shown only when the collection has them;
// and metadata conditions ("where": license=cc-by, width>=512), as removable chips, shown when
// the collection stores metadata (GET /api/info's metadata_keys). Their state lives in the
// address (?label=beach&cluster=3&where=license%3Dcc-by) like the rest of the search.
// People (GET /api/people) are chips too (?person=3&person=Ada): items must show every one of
// them, and they may stand alone, with no words (that person's photos).
"use strict";

// "a=1, b in x,y, c>2" -> ["a=1", "b in x,y", "c>2"]: a comma starts a new condition only
// where a key and an operator follow it (so the values of `in` may hold commas); newlines and
// semicolons always do.
const CONDITION_START = /,\s*(?=[A-Za-z_][\w.:-]*\s*(?:!=|<=|>=|=|<|>|\s+in\s))/i;
function splitConditions(text) {
  return text.split(/[\n;]+/).flatMap((part) => part.split(CONDITION_START))
    .map((c) => c.trim()).filter((c) => c.length > 0);
}

const searchFilters = {
  label: "",
  cluster: "",
  where: [],        // metadata conditions, all must hold (the API's filters.conditions)
  person: [],       // people by id ("3") or name, all must show (the API's filters.person)

  read(params) {
    this.label = params.get("label") || "";
    const c = parseInt(params.get("cluster") || "", 10);
    this.cluster = Number.isFinite(c) ? String(c) : "";
    this.where = params.getAll("where").map((w) => w.trim()).filter(Boolean);
    this.person = Array.from(new Set(params.getAll("person").map((w) => w.trim()).filter(Boolean)));
    this._show();
  },

  write(params) {
    if (this.label) params.set("label", this.label);
    if (this.cluster) params.set("cluster", this.cluster);
    for (const w of this.where) params.append("where", w);
    for (const p of this.person) params.append("person", p);
  },

  // The API's `filters` object, or null when none is set.
  body() {
    const f = {};
    if (this.label) f.label = [this.label];
    if (this.cluster) f.cluster = [parseInt(this.cluster, 10)];
    if (this.where.length) f.conditions = this.where.slice();
    if (this.person.length) f.person = this.person.map((p) => (/^\d+$/.test(p) ? parseInt(p, 10) : p));
    return Object.keys(f).length ? f : null;
  },

  active() { return Boolean(this.label || this.cluster || this.where.length || this.person.length); },

  // Metadata keys (GET /api/info) offered as completions; the field shows when there are any.
  setKeys(keys) {
    this._keys = keys || [];
    const list = document.getElementById("where-keys");
    list.replaceChildren(...this._keys.map((k) => new Option(k)));
    this._show();
  },

  async init(onChange) {
    this._onChange = onChange;
    const input = document.getElementById("filter-where");
    const add = () => {
      const added = splitConditions(input.value).filter((c) => !this.where.includes(c));
      input.value = "";
      if (added.length) { this.where = this.where.concat(added); this._show(); onChange(); }
    };
    input.addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); add(); } });
    input.addEventListener("change", add);
    const label = document.getElementById("filter-label"), cluster = document.getElementById("filter-cluster");
    const [labels, clusters, people] = await Promise.all([
      api("/api/labels").catch(() => null), api("/api/clusters").catch(() => null),
      api("/api/people?limit=1000").catch(() => null)]);
    if (labels) {
      label.append(...labels.counts.map((c) => new Option(`${c.label} (${c.count.toLocaleString()})`, c.label)));
    }
    if (clusters) {
      cluster.append(...clusters.clusters.map((c) => new Option(`${c.name} · #${c.id} (${c.size.toLocaleString()})`, String(c.id))));
      if (clusters.noise) cluster.append(new Option(`noise (${clusters.noise.toLocaleString()})`, "-1"));
    }
    const person = document.getElementById("filter-person");
    this._people = new Map();
    this._crops = Boolean(people && people.crops_allowed);
    if (people) {
      for (const p of people.people) this._people.set(String(p.id), p);
      person.append(...people.people.map((p) => new Option(`${p.label} (${p.photos.toLocaleString()})`, String(p.id))));
    }
    this._available = { label: Boolean(labels), cluster: Boolean(clusters), person: Boolean(people && people.total) };
    this._show();
    person.addEventListener("change", () => {
      const value = person.value;
      person.value = "";
      if (value && !this.person.includes(value)) { this.person = this.person.concat([value]); this._show(); onChange(); }
    });
    label.addEventListener("change", () => { this.label = label.value; onChange(); });
    cluster.addEventListener("change", () => { this.cluster = cluster.value; onChange(); });
  },

  _chips() {
    const chips = this.where.map((w) => {
      const span = document.createElement("span");
      span.className = "chip where-chip";
      const text = document.createElement("span");
      text.textContent = w;
      const x = document.createElement("button");
      x.type = "button";
      x.textContent = "×";
      x.title = `Remove ${w}`;
      x.setAttribute("aria-label", `Remove the condition ${w}`);
      x.addEventListener("click", () => {
        this.where = this.where.filter((v) => v !== w);
        this._show();
        if (this._onChange) this._onChange();
      });
      span.append(text, x);
      return span;
    });
    document.getElementById("where-chips").replaceChildren(...chips);
    document.getElementById("person-chips").replaceChildren(...this.person.map((p) => this._personChip(p)));
  },

  // A person chip: the cover face (where the server shows crops) and the label, for an id or
  // a name given in the address.
  _personChip(value) {
    const people = this._people || new Map();
    const known = people.get(value) || Array.from(people.values()).find((p) => p.name && p.name.toLowerCase() === value.toLowerCase());
    const label = known ? known.label : value;
    const span = document.createElement("span");
    span.className = "chip person-chip";
    span.dataset.person = value;
    if (known && this._crops && known.cover_face !== null) {
      const img = document.createElement("img");
      img.src = `/api/faces/${known.cover_face}/crop`;
      img.alt = "";
      span.append(img);
    }
    const text = document.createElement("span");
    text.textContent = label;
    const x = document.createElement("button");
    x.type = "button";
    x.textContent = "×";
    x.title = `Remove ${label}`;
    x.setAttribute("aria-label", `Remove the person ${label}`);
    x.addEventListener("click", () => {
      this.person = this.person.filter((v) => v !== value);
      this._show();
      if (this._onChange) this._onChange();
    });
    span.append(text, x);
    return span;
  },

  // Show a select when the collection has its kind of data, or when the address sets it.
  _show() {
    this._chips();
    const whereShown = Boolean((this._keys && this._keys.length) || this.where.length);
    document.getElementById("filter-where-wrap").hidden = !whereShown;
    const avail = this._available || {};
    for (const [name, value] of [["label", this.label], ["cluster", this.cluster]]) {
      const select = document.getElementById(`filter-${name}`);
      if (value && !Array.from(select.options).some((o) => o.value === value)) select.append(new Option(value, value));
      select.value = value;
      document.getElementById(`filter-${name}-wrap`).hidden = !(avail[name] || value);
    }
    document.getElementById("filter-person-wrap").hidden = !(avail.person || this.person.length);
    document.getElementById("filters").hidden = !(avail.label || avail.cluster || avail.person || whereShown ||
                                                  this.active());
  },
};
