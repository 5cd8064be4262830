// The Map's two renderers (classic script, before scatter.js): WebGL2 on a hardware GPU, and
// a CPU rasterizer for browsers whose WebGL is emulated in software (or missing).
//
// Why two: one draw call of a million points takes a GPU a millisecond or two, but software
// WebGL (SwiftShader, llvmpipe: headless Chromium, virtual machines, blocklisted drivers)
// runs the vertex pipeline on the CPU and took 0.7-1 s per frame for 1,000,000 points on a
// 2-core machine, where writing the same points straight into an ImageData takes about 15 ms.
// Both draw the same picture: each point a square (a disc once it is 4 px or more) in its
// category's colour; with a selection, the rest dimmed and the selected drawn again on top.
"use strict";

const SCATTER_NONE = 0xffff;

// Distinct colours for the first categories (the largest, when categories come largest
// first), then hues a golden angle apart.
const BASE_COLOURS = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
  "#9c755f", "#bab0ac", "#1f77b4", "#17becf", "#bcbd22", "#8c564b", "#e377c2", "#2ca02c", "#d62728", "#9467bd",
  "#aec7e8", "#ffbb78"];
const DIM = [115, 122, 140];  // what unselected points fade towards
const DIM_MIX = 0.8;

function categoryColour(i) {
  if (i === SCATTER_NONE) return [128, 134, 146];
  i %= 4096;
  if (i < BASE_COLOURS.length) return [1, 3, 5].map((k) => parseInt(BASE_COLOURS[i].slice(k, k + 2), 16));
  const hue = (i * 137.508) % 360, s = 0.62, l = 0.58;
  const f = (n) => { const k = (n + hue / 30) % 12; return l - s * Math.min(l, 1 - l) * Math.max(-1, Math.min(k - 3, 9 - k, 1)); };
  return [f(0), f(8), f(4)].map((v) => Math.round(v * 255));
}

// Whether this browser's WebGL2 is missing or emulated on the CPU.
function softwareWebGL() {
  const gl = document.createElement("canvas").getContext("webgl2");
  if (!gl) return true;
  const info = gl.getExtension("WEBGL_debug_renderer_info");
  const name = String(gl.getParameter(info ? info.UNMASKED_RENDERER_WEBGL : gl.RENDERER));
  const lose = gl.getExtension("WEBGL_lose_context");
  if (lose) lose.loseContext();
  return /swiftshader|llvmpipe|softpipe|software|basic render/i.test(name);
}

// ------------------------------------------------------------------ WebGL2
const VERTEX = `#version 300 es
layout(location = 0) in vec2 a_pos;
layout(location = 1) in uint a_cat;
uniform vec2 u_scale;
uniform vec2 u_offset;
uniform float u_size;
uniform float u_alpha;
uniform float u_dim;
uniform sampler2D u_palette;
out vec4 v_color;
void main() {
  gl_Position = vec4(a_pos * u_scale + u_offset, 0.0, 1.0);
  gl_PointSize = u_size;
  vec3 c = texelFetch(u_palette, ivec2(int(a_cat & 255u), int(a_cat >> 8u)), 0).rgb;
  v_color = vec4(mix(c, vec3(${DIM.map((c) => (c / 255).toFixed(3)).join(", ")}), u_dim), u_alpha);
}`;

const FRAGMENT = `#version 300 es
precision mediump float;
in vec4 v_color;
uniform bool u_round;
out vec4 color;
void main() {
  if (u_round) { vec2 d = gl_PointCoord - 0.5; if (dot(d, d) > 0.25) discard; }
  color = v_color;
}`;

class GLRenderer {
  constructor(canvas) {
    const gl = canvas.getContext("webgl2", { antialias: false, preserveDrawingBuffer: true, alpha: false });
    if (!gl) throw new Error("no WebGL2");
    this.name = "webgl";
    this.gl = gl;
    const compile = (type, src) => {
      const s = gl.createShader(type);
      gl.shaderSource(s, src);
      gl.compileShader(s);
      if (!gl.getShaderParameter(s, gl.COMPILE_STATUS)) throw new Error(gl.getShaderInfoLog(s));
      return s;
    };
    const p = this.program = gl.createProgram();
    gl.attachShader(p, compile(gl.VERTEX_SHADER, VERTEX));
    gl.attachShader(p, compile(gl.FRAGMENT_SHADER, FRAGMENT));
    gl.linkProgram(p);
    if (!gl.getProgramParameter(p, gl.LINK_STATUS)) throw new Error(gl.getProgramInfoLog(p));
    this.u = {};
    for (const name of ["u_scale", "u_offset", "u_size", "u_alpha", "u_dim", "u_palette", "u_round"]) {
      this.u[name] = gl.getUniformLocation(p, name);
    }
    this.vao = gl.createVertexArray();
    [this.posBuf, this.catBuf, this.selBuf] = [gl.createBuffer(), gl.createBuffer(), gl.createBuffer()];
    // One RGBA texel per possible category (256 x 256 = every Uint16).
    const data = new Uint8Array(65536 * 4);
    for (let i = 0; i < 65536; i++) data.set([...categoryColour(i), 255], i * 4);
    this.palette = gl.createTexture();
    gl.bindTexture(gl.TEXTURE_2D, this.palette);
    gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA8, 256, 256, 0, gl.RGBA, gl.UNSIGNED_BYTE, data);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.NEAREST);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, gl.NEAREST);
    this.n = 0;
    this.selected = 0;
  }

  _attribute(buf, data, setup) {
    const gl = this.gl;
    gl.bindVertexArray(this.vao);
    gl.bindBuffer(gl.ARRAY_BUFFER, buf);
    gl.bufferData(gl.ARRAY_BUFFER, data, gl.STATIC_DRAW);
    setup();
  }

  setPoints(xy) {
    const gl = this.gl;
    this.n = xy.length / 2;
    this._attribute(this.posBuf, xy, () => { gl.enableVertexAttribArray(0); gl.vertexAttribPointer(0, 2, gl.FLOAT, false, 0, 0); });
  }

  setColors(cats) {
    const gl = this.gl;
    this._attribute(this.catBuf, cats, () => { gl.enableVertexAttribArray(1); gl.vertexAttribIPointer(1, 1, gl.UNSIGNED_SHORT, 0, 0); });
  }

  setSelection(sel) {
    const gl = this.gl;
    this.selected = sel ? sel.length : 0;
    if (!sel) return;
    gl.bindVertexArray(this.vao);  // the element buffer is part of the vertex array's state
    gl.bindBuffer(gl.ELEMENT_ARRAY_BUFFER, this.selBuf);
    gl.bufferData(gl.ELEMENT_ARRAY_BUFFER, sel, gl.DYNAMIC_DRAW);
  }

  // f: {width, height (device px), cx, cy, scale (device px per unit), size (device px), bg [r, g, b] 0..1}
  draw(f) {
    const gl = this.gl, u = this.u;
    gl.viewport(0, 0, f.width, f.height);
    gl.clearColor(f.bg[0], f.bg[1], f.bg[2], 1);
    gl.clear(gl.COLOR_BUFFER_BIT);
    if (!this.n) return;
    gl.useProgram(this.program);
    gl.bindVertexArray(this.vao);
    gl.enable(gl.BLEND);
    gl.blendFunc(gl.SRC_ALPHA, gl.ONE_MINUS_SRC_ALPHA);
    gl.activeTexture(gl.TEXTURE0);
    gl.bindTexture(gl.TEXTURE_2D, this.palette);
    gl.uniform1i(u.u_palette, 0);
    const sx = (2 * f.scale) / f.width, sy = (2 * f.scale) / f.height;
    gl.uniform2f(u.u_scale, sx, sy);
    gl.uniform2f(u.u_offset, -f.cx * sx, -f.cy * sy);
    gl.uniform1i(u.u_round, f.size >= 4 ? 1 : 0);
    gl.uniform1f(u.u_size, f.size);
    gl.uniform1f(u.u_alpha, this.selected ? 0.5 : 0.85);
    gl.uniform1f(u.u_dim, this.selected ? DIM_MIX : 0);
    gl.drawArrays(gl.POINTS, 0, this.n);
    if (this.selected) {
      gl.uniform1f(u.u_size, f.selectedSize);
      gl.uniform1i(u.u_round, f.selectedSize >= 4 ? 1 : 0);
      gl.uniform1f(u.u_alpha, 1);
      gl.uniform1f(u.u_dim, 0);
      gl.drawElements(gl.POINTS, this.selected, gl.UNSIGNED_INT, 0);
    }
  }

  // Wait for the GPU to finish (one pixel read back): for timing a frame.
  sync() { this.gl.readPixels(0, 0, 1, 1, this.gl.RGBA, this.gl.UNSIGNED_BYTE, new Uint8Array(4)); }
}

// ------------------------------------------------------------------ the CPU
const rgba32 = ([r, g, b]) => ((255 << 24) | (b << 16) | (g << 8) | r) >>> 0;  // ImageData is RGBA bytes: ABGR as a little-endian Uint32

class CPURenderer {
  constructor(canvas) {
    this.name = "cpu";
    this.ctx = canvas.getContext("2d", { alpha: false });
    this.palette = new Uint32Array(65536);
    this.dimmed = new Uint32Array(65536);
    for (let i = 0; i < 65536; i++) {
      const c = categoryColour(i);
      this.palette[i] = rgba32(c);
      this.dimmed[i] = rgba32(c.map((v, k) => Math.round(v + DIM_MIX * (DIM[k] - v))));
    }
    this.xy = new Float32Array(0);
    this.sel = null;
  }

  setPoints(xy) { this.xy = xy; }
  setColors(cats) { this.cats = cats; }
  setSelection(sel) { this.sel = sel; }

  draw(f) {
    const W = f.width, H = f.height;
    if (!this.image || this.image.width !== W || this.image.height !== H) {
      this.image = this.ctx.createImageData(W, H);
      this.pixels = new Uint32Array(this.image.data.buffer);
    }
    this.pixels.fill(rgba32(f.bg.map((v) => Math.round(v * 255))));
    if (this.cats && this.cats.length === this.xy.length / 2) {
      this._splat(f, null, this.sel ? this.dimmed : this.palette, f.size);
      if (this.sel) this._splat(f, this.sel, this.palette, f.selectedSize);
    }
    this.ctx.putImageData(this.image, 0, 0);
  }

  sync() {}

  // Write each point's footprint (a square, or a disc from 4 px) into the pixels; later
  // points cover earlier ones. `only`: indexes to draw (else every point).
  _splat(f, only, palette, size) {
    const W = f.width, H = f.height, px = this.pixels, xy = this.xy, cats = this.cats;
    const s = Math.max(1, Math.round(size)), r = s >> 1;
    const offsets = [];
    for (let dy = -r; dy < s - r; dy++) {
      for (let dx = -r; dx < s - r; dx++) {
        if (s < 4 || (dx + 0.5 - (s - 2 * r) / 2) ** 2 + (dy + 0.5 - (s - 2 * r) / 2) ** 2 <= (s / 2) ** 2) offsets.push([dx, dy]);
      }
    }
    const flat = Int32Array.from(offsets, ([dx, dy]) => dy * W + dx), m = flat.length;
    const ox = W / 2 - f.cx * f.scale, oy = H / 2 + f.cy * f.scale, sc = f.scale;
    const count = only ? only.length : xy.length / 2;
    for (let k = 0; k < count; k++) {
      const i = only ? only[k] : k;
      const x = Math.floor(xy[2 * i] * sc + ox), y = Math.floor(oy - xy[2 * i + 1] * sc);
      if (x < r || y < r || x >= W - s || y >= H - s) {
        if (x < -s || y < -s || x >= W + s || y >= H + s) continue;
        for (const [dx, dy] of offsets) {  // at an edge: clip each pixel
          const X = x + dx, Y = y + dy;
          if (X >= 0 && Y >= 0 && X < W && Y < H) px[Y * W + X] = palette[cats[i]];
        }
        continue;
      }
      const o = y * W + x, c = palette[cats[i]];
      if (m === 1) px[o] = c; else for (let j = 0; j < m; j++) px[o + flat[j]] = c;
    }
  }
}
