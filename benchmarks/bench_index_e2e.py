"""``bench_index.py e2e`` and ``decode``: whole indexing runs, each in a fresh process.

* e2e: ``Collection.add`` of the photo and clip-art folders into fresh collections under
  each configuration (runtime/precision/decoder); the first, torch/fp32/pillow, is today's
  pipeline and every other is a ratio against it, measured in the same run. Each process
  also saves its vectors, and every configuration's cosine to today's is reported by path.
* decode: peak RSS (and time) indexing a folder of copies of the largest real openclipart
  PNGs, pillow against vips, each in a fresh process; then the pipeline's input stage alone
  (read, hash, decode, preprocess) on the photos, img/s for each decoder.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench_index_common import (
    Unavailable,
    Variant,
    abba,
    check_decoder,
    clipart_folder,
    decode_kwargs,
    fmt,
    folder_root,
    load_variant,
    photo_folder,
    ratio,
    samples,
    save_json,
    set_threads,
    spread,
    table,
    verdict,
    warm_page_cache,
)
from lookalike.images.decode import decode_image
from lookalike.pipeline.loader import ordered_map

CHILD = Path(__file__).resolve().parent / "bench_index_child.py"
#: Targets of issue 12: best configuration / today's pipeline.
E2E_TARGETS = {"photos": 1.7, "clip art": 2.2}
#: Target of issue 12 for the peak RSS indexing the largest PNGs with libvips.
PEAK_RSS_TARGET_MB = 600


@dataclass(frozen=True)
class Config:
    """How one indexing run runs: runtime, precision and decoder ("default": the library's)."""

    runtime: str
    precision: str
    decoder: str

    @property
    def label(self) -> str:
        return f"{self.runtime}/{self.precision}/{self.decoder}"

    @classmethod
    def parse(cls, text: str) -> "Config":
        parts = (text.strip().split("/") + ["default", "default"])[:3]
        return cls(*parts)


def parse_configs(text: str) -> list[Config]:
    return [Config.parse(t) for t in text.split(",") if t.strip()]


def run_child(args: Any, cfg: Config, folder: Path, work: Path, calibration: list | None,
              vectors: Path | None) -> dict[str, Any]:
    """Index ``folder`` in a fresh process under ``cfg``; its RESULT dict (or an ``error``)."""
    run = Path(tempfile.mkdtemp(prefix="run-", dir=work))
    spec = {"folder": str(folder), "collection": str(run / "c.lkl"), "model": args.model, "device": args.device,
            "runtime": cfg.runtime, "precision": cfg.precision, "decoder": cfg.decoder,
            "calibration": [str(p) for p in calibration] if calibration else None,
            "batch_size": args.batch_size, "workers": args.workers, "threads": args.threads,
            "vectors": str(vectors) if vectors else None}
    (run / "config.json").write_text(json.dumps(spec))
    try:
        proc = subprocess.run([sys.executable, str(CHILD), str(run / "config.json")], capture_output=True,
                              text=True, timeout=args.child_timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {args.child_timeout}s"}
    finally:
        shutil.rmtree(run / "c.lkl", ignore_errors=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        return {"error": f"exit {proc.returncode}: {(proc.stderr or proc.stdout).strip()[-600:]}"}
    return json.loads(lines[-1][len("RESULT "):])


def cos_to(baseline: Path, other: Path) -> tuple[float, float, int] | None:
    """Mean and min cosine between two runs' vectors of the same paths, and how many."""
    if not (baseline.is_file() and other.is_file()):
        return None
    a, b = np.load(baseline), np.load(other)
    rows_b = {p: i for i, p in enumerate(b["paths"])}
    pairs = [(i, rows_b[p]) for i, p in enumerate(a["paths"]) if p in rows_b]
    if not pairs:
        return None
    va, vb = a["vectors"][[i for i, _ in pairs]], b["vectors"][[j for _, j in pairs]]
    cos = np.sum(va * vb, axis=1) / (np.linalg.norm(va, axis=1) * np.linalg.norm(vb, axis=1))
    return float(cos.mean()), float(cos.min()), len(pairs)


def check_config(cfg: Config) -> str | None:
    """Why ``cfg`` cannot run here, or None."""
    try:
        check_decoder(cfg.decoder)
    except Unavailable as exc:
        return str(exc)
    return None


def prequantize(args: Any, cfg: Config, calibration: list) -> str | None:
    """Make the int8 model before timing (the library caches it; the child then only loads it)."""
    try:
        t0 = time.perf_counter()
        load_variant(args.model, args.device, Variant(cfg.runtime, "int8"), calibration)
        print(f"  int8 model for {cfg.label} ready in {time.perf_counter() - t0:.0f}s (one-time, not timed)",
              flush=True)
    except Unavailable as exc:
        return str(exc)
    return None


def _runs(args: Any, configs: list[Config], name: str, files: list[Path], work: Path,
          unavailable: dict[Config, str]) -> dict[Config, list[dict[str, Any]]]:
    """Every configuration's runs on one folder, in interleaved rounds."""
    root = folder_root(files)
    calibration = spread(files)
    for cfg in configs:
        if cfg.precision == "int8" and cfg not in unavailable:
            reason = prequantize(args, cfg, calibration)
            if reason:
                unavailable[cfg] = reason
    runs: dict[Config, list[dict[str, Any]]] = {c: [] for c in configs if c not in unavailable}
    for cfg in abba(list(runs), args.e2e_rounds):
        vec = work / f"{hashlib.md5((name + cfg.label).encode()).hexdigest()}.npz"
        r = run_child(args, cfg, root, work, calibration if cfg.precision == "int8" else None,
                      None if vec.exists() else vec)
        r["vectors_file"] = str(vec)
        runs[cfg].append(r)
        status = r.get("error") or (f"{len(files) / r['seconds']:.1f} img/s ({r['seconds']:.1f}s, {r['runtime']} "
                                    f"{r['precision']} {r['decoder']}, peak {fmt(r['peak_rss_add_mb'], '.0f')} MB)")
        print(f"  {name} {cfg.label}: {status}", flush=True)
    return runs


def e2e_table(name: str, n: int, configs: list[Config], runs: dict[Config, list[dict[str, Any]]],
              unavailable: dict[Config, str]) -> tuple[str, dict[str, Any]]:
    """The table of one folder (ratios against the first configuration) and its figures."""
    base_cfg = configs[0]

    def rate(cfg: Config) -> float | None:
        ok = [r for r in runs.get(cfg, []) if "error" not in r]
        return n * len(ok) / sum(r["seconds"] for r in ok) if ok else None

    base = rate(base_cfg)
    rows, result = [], {}
    for cfg in configs:
        if cfg in unavailable:
            rows.append([cfg.label, "unavailable: " + unavailable[cfg][:80]] + [""] * 6)
            continue
        ok = [r for r in runs[cfg] if "error" not in r]
        if not ok:
            rows.append([cfg.label, "FAILED: " + runs[cfg][0]["error"][-120:]] + [""] * 6)
            continue
        r0, rt = ok[0], rate(cfg)
        cos = cos_to(Path(runs[base_cfg][0]["vectors_file"]), Path(r0["vectors_file"])) if base_cfg in runs else None
        rows.append([cfg.label, f"{r0['runtime']} {r0['precision']} {r0['decoder']}", fmt(rt, ".1f"),
                     fmt(ratio(rt, base), ".2f", "x"), " ".join(f"{r['seconds']:.1f}" for r in ok),
                     f"{max(r['peak_rss_add_mb'] or 0 for r in ok):.0f}", f"{r0['load_s']:.1f}",
                     "" if cos is None else f"{cos[0]:.5f} / {cos[1]:.5f}"])
        result[cfg.label] = {"img_s": rt, "x_today": ratio(rt, base), "runs": ok, "cos_to_today": cos}
    text = table(["configuration", "ran as", "img/s", "/ today", "runs (s)", "peak RSS MB", "load s",
                  "cos to today (mean / min)"], rows)
    return f"\n{name}: {n} files\n{text}", result


def main_e2e(args: Any) -> None:
    """Entry point of the ``e2e`` subcommand."""
    configs = parse_configs(args.e2e_configs)
    unavailable = {c: r for c in configs if (r := check_config(c))}
    folders = {"photos": photo_folder(args), "clip art": clipart_folder(args)}
    work = Path(tempfile.mkdtemp(prefix="lookalike-bench-e2e-"))
    results: dict[str, Any] = {}
    t0 = time.perf_counter()
    try:
        for name, files in folders.items():
            print(f"\ne2e {name}: {len(files)} files, {warm_page_cache(files):.0f} MB (read once before timing); "
                  f"{args.e2e_rounds} round(s) of {', '.join(c.label for c in configs)}", flush=True)
            runs = _runs(args, configs, name, files, work, unavailable)
            text, results[name] = e2e_table(name, len(files), configs, runs, unavailable)
            print(text)
        print(f"\ntoday = {configs[0].label} (runtime/precision/decoder); 'default' = the library's own choice")
        for name, res in results.items():
            best = max(((label, r["x_today"]) for label, r in res.items() if label != configs[0].label
                        and r["x_today"] is not None), key=lambda t: t[1], default=(None, None))
            target = E2E_TARGETS[name]
            print(f"{name}: best {best[0]} = {fmt(best[1], '.2f', 'x')} today (target >= {target}x: "
                  f"{verdict(best[1], target)})")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"(e2e took {time.perf_counter() - t0:.0f}s)")
    save_json(args.json, "e2e", results)


# --------------------------------------------------------------------------- decode
def largest_clipart(n: int) -> list[Path]:
    """The ``n`` largest real openclipart PNGs by pixel count (symlinked duplicates left out)."""
    root = samples.clipart_root()
    sized = []
    for path in root.rglob("*.png"):
        if path.is_file() and not path.is_symlink():
            size = samples._png_size(path)
            if size:
                sized.append((size[0] * size[1], str(path), path))
    return [p for _, _, p in sorted(sized, reverse=True)[:n]]


def decode_only(model: Any, files: list[Path], workers: int, decoder: str) -> float:
    """Seconds for the pipeline's input stage (read, hash, decode, preprocess) on every file."""
    transform, min_side = model.image_transform, model.preprocess.min_decode_side
    kwargs = decode_kwargs(decoder)

    def prepare(path: Path) -> tuple[int, ...]:
        data = path.read_bytes()
        hashlib.blake2b(data, digest_size=16).digest()
        return transform(decode_image(data, min_side=min_side, name=str(path), **kwargs).image).shape

    t0 = time.perf_counter()
    for _ in ordered_map(prepare, files, workers=workers, prefetch=64):
        pass
    return time.perf_counter() - t0


def _growth(r: dict[str, Any]) -> float | None:
    """Peak RSS while adding, over the RSS once the model was loaded (MB)."""
    if r.get("peak_rss_add_mb") is None or r.get("rss_loaded_mb") is None:
        return None
    return r["peak_rss_add_mb"] - r["rss_loaded_mb"]


def _peak_rss(args: Any, work: Path) -> dict[str, Any]:
    """Index the largest PNGs under each decode configuration; print the table."""
    big = largest_clipart(args.largest)
    folder = work / "largest"
    folder.mkdir()
    for i, src in enumerate(big):
        shutil.copyfile(src, folder / f"{i:02d}_{src.name}")
    mp = [samples._png_size(p) for p in big]
    print(f"\ndecode: peak RSS indexing the {len(big)} largest openclipart PNGs "
          f"({', '.join(f'{w}x{h}' for w, h in mp)}; {sum(p.stat().st_size for p in big) / 1e6:.0f} MB), "
          "each configuration in a fresh process", flush=True)
    configs = parse_configs(args.decode_configs)
    rows, result = [], {}
    base_vec = None
    for cfg in configs:
        reason = check_config(cfg)
        if reason:
            rows.append([cfg.label, "unavailable: " + reason[:80]] + [""] * 7)
            continue
        vec = work / f"big-{len(result)}.npz"
        r = run_child(args, cfg, folder, work, None, vec)
        if "error" in r:
            rows.append([cfg.label, "FAILED: " + r["error"][-120:]] + [""] * 7)
            continue
        if base_vec is None and r["embedded"]:
            base_vec = vec  # the first run that indexed anything: the others' cosines are to it
        cos = cos_to(base_vec, vec) if base_vec is not None and vec != base_vec else None
        rows.append([cfg.label, f"{r['runtime']} {r['decoder']}", f"{r['seconds']:.1f}", f"{r['embedded']}",
                     f"{r['failed']}" + (f" ({'; '.join(r['failures'])[:150]})" if r["failed"] else ""),
                     f"{r['rss_loaded_mb']:.0f}", fmt(r["peak_rss_add_mb"], ".0f"), fmt(_growth(r), ".0f"),
                     "" if cos is None else f"{cos[0]:.4f} / {cos[1]:.4f} ({cos[2]})"])
        result[cfg.label] = r
        print(f"  {cfg.label}: {r['seconds']:.1f}s, peak {fmt(r['peak_rss_add_mb'], '.0f')} MB", flush=True)
    print()
    print(table(["configuration", "ran as", "s", "indexed", "refused", "RSS after load MB",
                 "peak RSS while adding MB", "peak - after load MB", "cos to the first that indexed (mean / min, n)"],
                rows))
    print("(the whole process's peak includes torch and the model, loaded before the add; the growth over "
          "that is what decoding, batching and writing took)")
    for label, r in result.items():
        whole = verdict(r["peak_rss_add_mb"], PEAK_RSS_TARGET_MB, at_most=True)
        print(f"{label}: peak {fmt(r['peak_rss_add_mb'], '.0f')} MB, growth {fmt(_growth(r), '.0f')} MB (target <= "
              f"{PEAK_RSS_TARGET_MB} MB: whole process {whole}, growth "
              f"{verdict(_growth(r), PEAK_RSS_TARGET_MB, at_most=True)})")
    return result


def _photo_decode(args: Any) -> dict[str, Any]:
    """Decode-only img/s on the photos, pillow against vips, interleaved rounds."""
    files = photo_folder(args)[: args.decode_photos]
    warm_page_cache(files)
    set_threads(args.threads)
    model = load_variant(args.model, args.device, Variant("torch"), None).model
    decoders = ["pillow", "vips"]
    missing = {}
    for d in decoders:
        try:
            check_decoder(d)
        except Unavailable as exc:
            missing[d] = str(exc)
    seconds: dict[str, list[float]] = {d: [] for d in decoders if d not in missing}
    print(f"\ndecode-only on {len(files)} photos (read, hash, decode with shrink-on-load, preprocess; "
          f"{args.workers} threads), {args.rounds} round(s)", flush=True)
    for d in abba(list(seconds), args.rounds):
        seconds[d].append(decode_only(model, files, args.workers, d))
        print(f"  {d}: {len(files) / seconds[d][-1]:.1f} img/s", flush=True)
    rate = {d: len(files) * len(s) / sum(s) for d, s in seconds.items()}
    rows = [[d, f"{rate[d]:.1f}", " ".join(f"{s:.1f}" for s in seconds[d])] for d in rate]
    rows += [[d, "unavailable: " + r[:80], ""] for d, r in missing.items()]
    print()
    print(table(["decoder", "img/s", "runs (s)"], rows))
    print(f"vips / pillow: {fmt(ratio(rate.get('vips'), rate.get('pillow')), '.2f', 'x')} (reported whichever wins)")
    return {"img_s": rate, "runs_s": seconds, "unavailable": missing, "files": len(files)}


def main_decode(args: Any) -> None:
    """Entry point of the ``decode`` subcommand."""
    work = Path(tempfile.mkdtemp(prefix="lookalike-bench-decode-"))
    t0 = time.perf_counter()
    try:
        result = {"largest_png": _peak_rss(args, work), "photos_decode_only": _photo_decode(args)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"(decode took {time.perf_counter() - t0:.0f}s)")
    save_json(args.json, "decode", result)
