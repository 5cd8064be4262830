"""`make demo`: index real public-domain clip art, then search it by text and by example image.

Runs the real ``lookalike`` command, exactly as a user would. The images come from Debian's
``openclipart-png`` package, fetched and cached by ``tools/samples.py`` on first run.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import samples  # noqa: E402


def run(*args: str) -> None:
    print(f"\n$ lookalike {' '.join(args)}", flush=True)
    subprocess.run([str(Path(sys.executable).parent / "lookalike"), *args], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", type=Path, default=Path(".cache/demo"))
    parser.add_argument("--n", type=int, default=800, help="clip-art images to index")
    args = parser.parse_args()

    images = args.workdir / f"clipart-{args.n}"
    print(f"Fetching real clip art (Debian openclipart-png, cached) into {images} ...", flush=True)
    files = samples.make_clipart_folder(images, n=args.n)
    collection = args.workdir / "demo.lkl"
    if collection.exists():
        shutil.rmtree(collection)  # a demo shows a first run; re-runs are shown below

    run("index", str(images), "--collection", str(collection))
    run("index", str(images), "--collection", str(collection))  # second run: nothing to do
    run("info", "--collection", str(collection))
    run("search", "a red apple", "--collection", str(collection), "-k", "5")
    run("search", "car", "--collection", str(collection), "-k", "5")
    fruit = sorted(f for f in files if "/food/fruit/" in str(f)) or sorted(files)
    query = fruit[0]
    run("search", str(query), "--collection", str(collection), "-k", "5")
    run("search", "2:flower", "+", str(query), "--collection", str(collection), "-k", "3", "--json")
    print("\nDemo done. Try your own: lookalike index ~/Pictures && lookalike search \"a dog on a beach\"")


if __name__ == "__main__":
    main()
