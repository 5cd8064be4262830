"""`make demo`: index real public-domain clip art, then search it by text and by example image.

The images are 35 categories of Debian's openclipart-png (animals, food, music, vehicles...),
20 each; the queries show what the offline ``lite`` model does well.

Runs the real ``lookalike`` command, exactly as a user would. The images come from Debian's
``openclipart-png`` package, fetched and cached by ``tools/samples.py`` on first run.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

# The repository root, so that tools/ imports as a package, as it does for the tests and benchmarks.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools import samples  # noqa: E402


def copy_labelled(dest: Path, per_class: int) -> list[Path]:
    """Copy the labelled clip-art subset into ``dest/<category>/`` (idempotent)."""
    files = []
    for label, paths in samples.clipart_labelled(per_class=per_class, min_class_size=per_class).items():
        for src in paths:
            target = dest / label / src.name
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, target)
            files.append(target)
    return files


def run(*args: str) -> None:
    print(f"\n$ lookalike {' '.join(args)}", flush=True)
    subprocess.run([str(Path(sys.executable).parent / "lookalike"), *args], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", type=Path, default=Path(".cache/demo"))
    parser.add_argument("--per-class", type=int, default=20, help="clip-art images per category")
    args = parser.parse_args()

    images = args.workdir / f"clipart-{args.per_class}"
    print(f"Fetching real clip art (Debian openclipart-png, cached) into {images} ...", flush=True)
    files = copy_labelled(images, args.per_class)
    collection = args.workdir / "demo.lkl"
    if collection.exists():
        shutil.rmtree(collection)  # a demo shows a first run; re-runs are shown below

    run("index", str(images), "--collection", str(collection))
    run("index", str(images), "--collection", str(collection))  # second run: nothing to do
    run("info", "--collection", str(collection))
    for text in ("a red apple", "a sailing boat", "a guitar"):
        run("search", text, "--collection", str(collection), "-k", "5")
    weather = sorted(f for f in files if f.parent.name == "weather")
    query = next((f for f in weather if f.name == "rain.png"), (weather or sorted(files))[0])
    run("search", str(query), "--collection", str(collection), "-k", "5")
    run("search", str(query), "+", "0.5:lightning", "--collection", str(collection), "-k", "3", "--json")
    print("\nDemo done. Browse it in the web UI: make serve (http://127.0.0.1:8000).")
    print("Try your own: lookalike index ~/Pictures && lookalike search \"a dog on a beach\"")


if __name__ == "__main__":
    main()
