// The Map's scatter plot (classic script, after scatter-render.js; `Scatter` is a global):
// a million points, pan and zoom, hover, lasso, drawn by WebGL2 or, where WebGL is emulated
// in software, by the CPU (see scatter-render.js).
//
// Written here rather than vendored: the WebGL scatter libraries on npm that handle millions
// of points (regl-scatterplot and the others built on regl) compile their shaders' glue code
// with `Function(...)`, which the pages' Content-Security-Policy (script-src 'self', no
// 'unsafe-eval') forbids. What the map needs is small. Hover and lasso run on the CPU: a
// uniform grid over the points finds the nearest one, and a lasso is filled into a mask the
// size of the canvas that each point's pixel is looked up in (one pass, whatever the shape).
"use strict";

class Scatter {
  // canvas: the WebGL canvas; overlay: a 2-D canvas on top of it (lasso, hover ring, marks).
  // on: { hover(index, x, y), click(index), lasso(indices), view() } — all optional.
  // renderer: "webgl", "cpu", or "auto" (WebGL2 unless it is emulated in software).
  constructor(canvas, overlay, on = {}, renderer = "auto") {
    this.canvas = canvas;
    this.overlay = overlay;
    this.on = on;
    this.renderer = Scatter.renderer(canvas, renderer);
    this.n = 0;
    this.xy = new Float32Array(0);
    this.selection = null;     // Uint32Array of point indexes, or null
    this.marks = [];           // point indexes ringed on the overlay (e.g. search hits)
    this.hovered = -1;
    this.lassoMode = false;
    this.lassoPath = null;
    this.view = { cx: 0, cy: 0, scale: 1 };
    this.fitScale = 1;
    this.frames = [];          // milliseconds between consecutive drawn frames
    this._lastFrame = 0;
    this._pending = false;
    this._bg = [0.09, 0.1, 0.13];
    this._wire();
    this.resize();
  }

  static renderer(canvas, want) {
    if (want === "cpu" || (want !== "webgl" && softwareWebGL())) return new CPURenderer(canvas);
    try { return new GLRenderer(canvas); } catch (_) { return new CPURenderer(canvas); }
  }

  setBackground(css) {
    const m = /^#([0-9a-f]{6})$/i.exec(css.trim());
    if (m) this._bg = [0, 2, 4].map((k) => parseInt(m[1].slice(k, k + 2), 16) / 255);
    this.render();
  }

  // xy: Float32Array of x, y pairs; bounds: {min_x, min_y, max_x, max_y}.
  setPoints(xy, bounds) {
    this.n = xy.length / 2;
    this.xy = xy;
    this.bounds = bounds;
    this.grid = null;  // built at the first hover or click
    this.renderer.setPoints(xy);
    this.selection = null;
    this.renderer.setSelection(null);
    this.marks = [];
    this.fit();
  }

  setColors(categories) {
    this.categories = categories;
    this.renderer.setColors(categories);
    this.render();
  }

  setSelection(indices) {
    this.selection = indices && indices.length ? indices : null;
    this.renderer.setSelection(this.selection);
    this.render();
  }

  setMarks(indices) { this.marks = indices || []; this._drawOverlay(); }

  // ------------------------------------------------------------------ the view
  resize() {
    const dpr = window.devicePixelRatio || 1;
    const rect = this.canvas.getBoundingClientRect();
    this.w = Math.max(1, rect.width);
    this.h = Math.max(1, rect.height);
    for (const c of [this.canvas, this.overlay]) {
      c.width = Math.round(this.w * dpr);
      c.height = Math.round(this.h * dpr);
    }
    this.dpr = dpr;
    this.render();
  }

  fit() {
    const b = this.bounds || { min_x: -1, max_x: 1, min_y: -1, max_y: 1 };
    const spanX = Math.max(b.max_x - b.min_x, 1e-9), spanY = Math.max(b.max_y - b.min_y, 1e-9);
    const pad = Math.min(this.padRight || 0, this.w / 2);  // room kept free on the right (the legend)
    this.fitScale = 0.92 * Math.min((this.w - pad) / spanX, this.h / spanY);
    this.view = { cx: (b.min_x + b.max_x) / 2 + pad / 2 / this.fitScale, cy: (b.min_y + b.max_y) / 2, scale: this.fitScale };
    this._changed();
  }

  pan(dx, dy) {  // in CSS pixels
    this.view.cx -= dx / this.view.scale;
    this.view.cy += dy / this.view.scale;
    this._changed();
  }

  zoomAt(factor, px = this.w / 2, py = this.h / 2) {
    const v = this.view;
    const scale = Math.min(Math.max(v.scale * factor, this.fitScale / 4), this.fitScale * 20000);
    const [x, y] = this.toData(px, py);
    v.scale = scale;
    v.cx = x - (px - this.w / 2) / scale;
    v.cy = y + (py - this.h / 2) / scale;
    this._changed();
  }

  toData(px, py) { const v = this.view; return [v.cx + (px - this.w / 2) / v.scale, v.cy - (py - this.h / 2) / v.scale]; }
  toScreen(i) {
    const v = this.view;
    return [(this.xy[2 * i] - v.cx) * v.scale + this.w / 2, this.h / 2 - (this.xy[2 * i + 1] - v.cy) * v.scale];
  }

  _changed() { this.render(); if (this.on.view) this.on.view(); }

  pointSize() {
    const base = Math.sqrt((this.w * this.h) / Math.max(this.n, 1)) * 0.8;
    const zoom = Math.sqrt(this.view.scale / this.fitScale);
    return Math.min(Math.max(base, 1.5) * Math.max(zoom, 0.5), 10);
  }

  // ------------------------------------------------------------------ drawing
  render() {
    if (this._pending) return;
    this._pending = true;
    requestAnimationFrame((t) => {
      this._pending = false;
      if (this._lastFrame && t - this._lastFrame < 250) this.frames.push(t - this._lastFrame);
      if (this.frames.length > 2000) this.frames.splice(0, 1000);
      this._lastFrame = t;
      this.draw();
    });
  }

  draw() {
    const v = this.view, size = this.pointSize() * this.dpr;
    this.renderer.draw({ width: this.canvas.width, height: this.canvas.height, cx: v.cx, cy: v.cy,
      scale: v.scale * this.dpr, size, selectedSize: Math.max(size * 1.5, 3 * this.dpr), bg: this._bg });
    this._drawOverlay();
  }

  // Draw now and wait until the frame is done: for timing.
  drawSync() { this.draw(); this.renderer.sync(); }

  _drawOverlay() {
    const ctx = this.overlay.getContext("2d");
    ctx.setTransform(this.dpr, 0, 0, this.dpr, 0, 0);
    ctx.clearRect(0, 0, this.w, this.h);
    ctx.lineWidth = 2;
    ctx.strokeStyle = "#23c4a8";
    for (const i of this.marks) {
      const [x, y] = this.toScreen(i);
      ctx.beginPath(); ctx.arc(x, y, 7, 0, 2 * Math.PI); ctx.stroke();
    }
    if (this.hovered >= 0) {
      const [x, y] = this.toScreen(this.hovered);
      ctx.strokeStyle = "#ffffff";
      ctx.beginPath(); ctx.arc(x, y, 6, 0, 2 * Math.PI); ctx.stroke();
    }
    if (this.lassoPath && this.lassoPath.length > 1) {
      ctx.strokeStyle = "#6d5efc";
      ctx.fillStyle = "rgba(109, 94, 252, 0.12)";
      ctx.setLineDash([5, 4]);
      ctx.beginPath();
      this.lassoPath.forEach(([x, y], k) => (k ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
      ctx.closePath(); ctx.fill(); ctx.stroke();
      ctx.setLineDash([]);
    }
  }

  // ------------------------------------------------------------------ finding points
  // A uniform grid over the points (a counting sort of their cells): `start[c]..start[c+1]`
  // in `order` are the points of cell c.
  _index() {
    const n = this.n, b = this.bounds;
    const g = Math.max(8, Math.min(1024, Math.round(Math.sqrt(n / 2))));
    const sx = g / Math.max(b.max_x - b.min_x, 1e-9), sy = g / Math.max(b.max_y - b.min_y, 1e-9);
    const cell = new Uint32Array(n), start = new Uint32Array(g * g + 1), order = new Uint32Array(n);
    for (let i = 0; i < n; i++) {
      const cx = Math.min(g - 1, Math.max(0, Math.floor((this.xy[2 * i] - b.min_x) * sx)));
      const cy = Math.min(g - 1, Math.max(0, Math.floor((this.xy[2 * i + 1] - b.min_y) * sy)));
      cell[i] = cy * g + cx;
      start[cell[i] + 1]++;
    }
    for (let c = 0; c < g * g; c++) start[c + 1] += start[c];
    const fill = start.slice(0, g * g);
    for (let i = 0; i < n; i++) order[fill[cell[i]]++] = i;
    this.grid = { g, sx, sy, start, order };
  }

  // The point nearest (px, py) within `radius` CSS pixels, or -1.
  hit(px, py, radius = 8) {
    if (!this.n) return -1;
    if (!this.grid) this._index();
    const { g, sx, sy, start, order } = this.grid, b = this.bounds;
    const [x, y] = this.toData(px, py);
    const r = radius / this.view.scale;
    const x0 = Math.max(0, Math.floor((x - r - b.min_x) * sx)), x1 = Math.min(g - 1, Math.floor((x + r - b.min_x) * sx));
    const y0 = Math.max(0, Math.floor((y - r - b.min_y) * sy)), y1 = Math.min(g - 1, Math.floor((y + r - b.min_y) * sy));
    let best = -1, bestD = r * r;
    for (let cy = y0; cy <= y1; cy++) {
      for (let cx = x0; cx <= x1; cx++) {
        const c = cy * g + cx;
        for (let k = start[c]; k < start[c + 1]; k++) {
          const i = order[k], dx = this.xy[2 * i] - x, dy = this.xy[2 * i + 1] - y, d = dx * dx + dy * dy;
          if (d <= bestD) { bestD = d; best = i; }
        }
      }
    }
    return best;
  }

  // Indexes of the points inside a polygon of screen points (CSS pixels), in index order.
  inPolygon(path) {
    const w = Math.ceil(this.w), h = Math.ceil(this.h);
    const mask = new OffscreenCanvas(w, h).getContext("2d", { willReadFrequently: true });
    mask.beginPath();
    path.forEach(([x, y], k) => (k ? mask.lineTo(x, y) : mask.moveTo(x, y)));
    mask.closePath();
    mask.fill();
    const alpha = mask.getImageData(0, 0, w, h).data;
    return this._collect((px, py) => alpha[(py * w + px) * 4 + 3] > 127);
  }

  // Indexes of the points in the current view.
  inView() { return this._collect(() => true); }

  _collect(inside) {
    const v = this.view, w = Math.ceil(this.w), h = Math.ceil(this.h), hw = this.w / 2, hh = this.h / 2;
    const out = new Uint32Array(this.n);
    let m = 0;
    for (let i = 0; i < this.n; i++) {
      const px = Math.floor((this.xy[2 * i] - v.cx) * v.scale + hw), py = Math.floor(hh - (this.xy[2 * i + 1] - v.cy) * v.scale);
      if (px >= 0 && py >= 0 && px < w && py < h && inside(px, py)) out[m++] = i;
    }
    return out.slice(0, m);
  }

  // ------------------------------------------------------------------ input
  setLassoMode(on) { this.lassoMode = on; this.canvas.classList.toggle("lasso", on); }

  _wire() {
    const el = this.canvas;
    let drag = null, hoverQueued = false, last = null;
    const pos = (e) => { const r = el.getBoundingClientRect(); return [e.clientX - r.left, e.clientY - r.top]; };
    el.addEventListener("pointerdown", (e) => {
      if (e.button !== 0) return;
      el.setPointerCapture(e.pointerId);
      const [x, y] = pos(e);
      drag = { x, y, x0: x, y0: y, lasso: this.lassoMode || e.shiftKey };
      if (drag.lasso) this.lassoPath = [[x, y]];
    });
    el.addEventListener("pointermove", (e) => {
      const [x, y] = pos(e);
      last = [x, y];
      if (drag && drag.lasso) {
        const p = this.lassoPath[this.lassoPath.length - 1];
        if (Math.hypot(x - p[0], y - p[1]) > 2) { this.lassoPath.push([x, y]); this._drawOverlay(); }
      } else if (drag) {
        this.pan(x - drag.x, y - drag.y);
        drag.x = x; drag.y = y;
      } else if (!hoverQueued) {
        hoverQueued = true;
        requestAnimationFrame(() => { hoverQueued = false; if (last) this._hover(last[0], last[1]); });
      }
    });
    const end = (e) => {
      if (!drag) return;
      const [x, y] = pos(e), d = drag;
      drag = null;
      if (d.lasso) {
        const path = this.lassoPath;
        this.lassoPath = null;
        if (path.length > 2 && this.on.lasso) this.on.lasso(this.inPolygon(path));
        this._drawOverlay();
      } else if (Math.hypot(x - d.x0, y - d.y0) < 4 && this.on.click) {
        const i = this.hit(x, y);
        if (i >= 0) this.on.click(i);
      }
    };
    el.addEventListener("pointerup", end);
    el.addEventListener("pointercancel", end);
    el.addEventListener("pointerleave", () => { last = null; if (!drag) this._hover(-1, -1); });
    el.addEventListener("wheel", (e) => {
      e.preventDefault();
      const [x, y] = pos(e);
      this.zoomAt(Math.exp(-e.deltaY * (e.deltaMode ? 0.05 : 0.0015)), x, y);
    }, { passive: false });
    el.addEventListener("dblclick", (e) => { const [x, y] = pos(e); this.zoomAt(2, x, y); });
    el.addEventListener("keydown", (e) => {
      const step = 60;
      const keys = { ArrowLeft: () => this.pan(step, 0), ArrowRight: () => this.pan(-step, 0),
        ArrowUp: () => this.pan(0, step), ArrowDown: () => this.pan(0, -step), "+": () => this.zoomAt(1.5),
        "=": () => this.zoomAt(1.5), "-": () => this.zoomAt(1 / 1.5), "0": () => this.fit() };
      if (keys[e.key]) { e.preventDefault(); keys[e.key](); }
    });
    new ResizeObserver(() => this.resize()).observe(el);
  }

  _hover(x, y) {
    const i = x < 0 ? -1 : this.hit(x, y);
    if (i === this.hovered) return;
    this.hovered = i;
    this._drawOverlay();
    if (this.on.hover) this.on.hover(i, x, y);
  }

  // For benchmarks: on each of `frames` animation frames, move the view ("pan": 3 px right;
  // "zoom": 3 % closer to the middle, then back out) and redraw every point; resolves to the
  // milliseconds between consecutive frames.
  timeFrames(frames, kind = "pan") {
    return new Promise((resolve) => {
      const times = [];
      const step = (t) => {
        times.push(t);
        if (kind === "zoom") this.view.scale *= times.length <= frames / 2 ? 1.03 : 1 / 1.03;
        else this.view.cx -= 3 / this.view.scale;
        this.draw();
        if (times.length <= frames) requestAnimationFrame(step); else resolve(times.slice(1).map((x, k) => x - times[k]));
      };
      requestAnimationFrame(step);
    });
  }
}
