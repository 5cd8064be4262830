// The search page's label and cluster filters (after common.js, before app.js): two selects,
// filled from GET /api/labels and GET /api/clusters, shown only when the collection has them.
// Their state lives in the address (?label=beach&cluster=3) like the rest of the search.
"use strict";

const searchFilters = {
  label: "",
  cluster: "",

  read(params) {
    this.label = params.get("label") || "";
    const c = parseInt(params.get("cluster") || "", 10);
    this.cluster = Number.isFinite(c) ? String(c) : "";
    this._show();
  },

  write(params) {
    if (this.label) params.set("label", this.label);
    if (this.cluster) params.set("cluster", this.cluster);
  },

  // The API's `filters` object, or null when none is set.
  body() {
    const f = {};
    if (this.label) f.label = [this.label];
    if (this.cluster) f.cluster = [parseInt(this.cluster, 10)];
    return Object.keys(f).length ? f : null;
  },

  active() { return Boolean(this.label || this.cluster); },

  async init(onChange) {
    const label = document.getElementById("filter-label"), cluster = document.getElementById("filter-cluster");
    const [labels, clusters] = await Promise.all([
      api("/api/labels").catch(() => null), api("/api/clusters").catch(() => null)]);
    if (labels) {
      label.append(...labels.counts.map((c) => new Option(`${c.label} (${c.count.toLocaleString()})`, c.label)));
    }
    if (clusters) {
      cluster.append(...clusters.clusters.map((c) => new Option(`${c.name} · #${c.id} (${c.size.toLocaleString()})`, String(c.id))));
      if (clusters.noise) cluster.append(new Option(`noise (${clusters.noise.toLocaleString()})`, "-1"));
    }
    this._available = { label: Boolean(labels), cluster: Boolean(clusters) };
    this._show();
    label.addEventListener("change", () => { this.label = label.value; onChange(); });
    cluster.addEventListener("change", () => { this.cluster = cluster.value; onChange(); });
  },

  // Show a select when the collection has its kind of data, or when the address sets it.
  _show() {
    const avail = this._available || {};
    for (const [name, value] of [["label", this.label], ["cluster", this.cluster]]) {
      const select = document.getElementById(`filter-${name}`);
      if (value && !Array.from(select.options).some((o) => o.value === value)) select.append(new Option(value, value));
      select.value = value;
      document.getElementById(`filter-${name}-wrap`).hidden = !(avail[name] || value);
    }
    document.getElementById("filters").hidden = !(avail.label || avail.cluster || this.active());
  },
};
