"""`make demo`: index real public-domain clip art, search it by text and by example image,
plant edited copies of a few images and find them as duplicates, then explore the collection:
zero-shot labels (and a search filtered by one), clusters as an HTML contact sheet, and a map
as a PNG. Last, it scores ``lite`` against a colour histogram on the category folders as
labels (``lookalike evaluate``, with an HTML report), and finds and names the people in a few
real photos (``lookalike faces index``, ``people``, ``search person:NAME``).

The images are 35 categories of Debian's openclipart-png (animals, food, music, vehicles...),
20 each; the queries show what the offline ``lite`` model does well.

Runs the real ``lookalike`` command, exactly as a user would. The images come from Debian's
``openclipart-png`` package, fetched and cached by ``tools/samples.py`` on first run.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

# The repository root, so that tools/ imports as a package, as it does for the tests and benchmarks.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools import face_samples, samples  # noqa: E402


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


def plant_copies(files: list[Path], dest: Path) -> list[Path]:
    """Write three edited copies of demo images into ``dest`` (emptied first): a JPEG re-encode
    at quality 50, a resize to 40%, and a byte-for-byte copy, each of a different category."""
    from PIL import Image

    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    originals: dict[str, Path] = {}
    for f in sorted(files, key=lambda p: (p.stat().st_size, p)):  # small files: quick to edit...
        with Image.open(f) as img:
            if min(img.size) >= 300:  # ...but not icons, which a 40% resize leaves a few pixels wide
                originals.setdefault(f.parent.name, f)
    jpeg, resized, copied = list(originals.values())[:3]
    planted = [dest / f"{jpeg.stem}-q50.jpg", dest / f"{resized.stem}-40pct.png", dest / copied.name]
    with Image.open(jpeg) as img:
        rgba = img.convert("RGBA")
        flat = Image.new("RGB", rgba.size, "white")
        flat.paste(rgba, mask=rgba.getchannel("A"))  # JPEG has no alpha: flatten onto white
        flat.save(planted[0], quality=50)
    with Image.open(resized) as img:
        img.resize((max(1, img.width * 2 // 5), max(1, img.height * 2 // 5)), Image.Resampling.LANCZOS).save(planted[1])
    shutil.copyfile(copied, planted[2])
    for src, copy in zip((jpeg, resized, copied), planted):
        print(f"  planted {copy.name}  (from {src.parent.name}/{src.name})")
    return planted


#: Zero-shot labels for the demo's clip art: roughly its categories, in plain words.
LABELS = ("bird, insect, mammal, house, computer, drink, bread, dessert, fruit, map, person, clothing, hat, "
          "flower, plant, musical instrument, sport, toy, flag, weather, tool, weapon, boat, road sign, car")


def run(*args: str) -> None:
    print(f"\n$ lookalike {shlex.join(args)}", flush=True)
    subprocess.run([str(Path(sys.executable).parent / "lookalike"), *args], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", type=Path, default=Path(".cache/demo"))
    parser.add_argument("--per-class", type=int, default=20, help="clip-art images per category")
    args = parser.parse_args()

    images = args.workdir / f"clipart-{args.per_class}"
    print(f"Fetching real clip art (Debian openclipart-png, cached) into {images} ...", flush=True)
    files = copy_labelled(images, args.per_class)
    # Edited copies of a few images, planted below after the first indexing, as a folder of
    # downloads beside the originals would hold them.
    copies = args.workdir / "downloads"
    shutil.rmtree(copies, ignore_errors=True)
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

    print(f"\nDuplicates: planting edited copies of three images in {copies} ...", flush=True)
    plant_copies(files, copies)
    run("index", str(images), str(copies), "--collection", str(collection))  # adds just the three copies
    # Every group, the planted copies among them; clip art drawn from one template (road signs,
    # map outlines, flags) groups too: `lite` sees those as near duplicates.
    run("dupes", "--collection", str(collection))
    run("dupes", "--collection", str(collection), "--html", str(args.workdir / "dupes.html"))
    # The originals are the reference: never moved, and a group holding one keeps it. So only
    # the downloaded copies are moved to the quarantine (a dry run first), and then put back.
    quarantine = args.workdir / "quarantine"
    shutil.rmtree(quarantine, ignore_errors=True)
    tidy = ("dupes", "--collection", str(collection), "--reference", str(images), "--action", "move", "--to",
            str(quarantine))
    run(*tidy)
    run(*tidy, "--apply")
    journal = max(quarantine.glob("journal-*.jsonl"))
    run("dupes", "--undo", str(journal))  # everything back where it was, in the collection too
    print(f"\nOpen {args.workdir / 'dupes.html'} in a browser to review the groups (works offline).")
    clusters, picture = explore(collection, args.workdir)
    # The category folders are labels: how well does lite fit them, against a colour histogram?
    print("\nEvaluating models on the demo's labels (its category folders) ...", flush=True)
    evaluation = args.workdir / "evaluate.html"
    run("evaluate", str(images), "--models", "lite,histogram", "--html", str(evaluation))
    people(args.workdir)
    print("\nDemo done. Browse it in the web UI: make serve (http://127.0.0.1:8000).")
    print("Try your own: lookalike index ~/Pictures && lookalike search \"a dog on a beach\"")
    print(f"\nClusters (contact sheets, opens offline): {clusters}")
    print(f"Map of the collection (PNG): {picture}")
    print(f"Model evaluation on the demo's labels (HTML, opens offline): {evaluation}")


def people(workdir: Path) -> None:
    """Faces and people (opt-in, offline) on real photos: the face_recognition package's test
    photos (Obama, Biden; fetched with pip and cached), two copies derived from Biden's, and two
    pictures of no one, in a collection of their own."""
    print("\nPeople: finding faces and grouping them (real test photos from PyPI's face_recognition sdist) ...",
          flush=True)
    photos = face_samples.people_folder(workdir / "people-photos")
    collection = workdir / "people.lkl"
    shutil.rmtree(collection, ignore_errors=True)
    c = ("--collection", str(collection))
    run("index", str(photos), *c, "--quiet")
    run("faces", "index", *c)
    run("people", *c)
    # Person 1 holds the most faces: Obama's six (three photos, a PNG copy, two partial faces).
    run("people", "name", "1", "Barack Obama", *c)
    run("people", "name", "2", "Joe Biden", *c)
    run("search", "person:Barack Obama", *c, "-k", "3")
    run("people", *c, "--json")


def explore(collection: Path, workdir: Path) -> tuple[Path, Path]:
    """Label, cluster and map the demo collection through the CLI; returns the clusters page
    and the map picture."""
    print("\nExploring: zero-shot labels, clusters and a map ...", flush=True)
    run("label", "--collection", str(collection), "--labels", LABELS)
    run("search", "a red apple", "--collection", str(collection), "--label", "fruit", "-k", "5")
    clusters, picture = workdir / "clusters.html", workdir / "map.png"
    for stale in (clusters, picture):
        stale.unlink(missing_ok=True)  # what is printed at the end was written by this run
    run("cluster", "--collection", str(collection), "--html", str(clusters))
    run("map", "--collection", str(collection), "--png", str(picture), "--color", "cluster", "--thumbnails", "16")
    for made in (clusters, picture):
        if not made.is_file():
            raise SystemExit(f"demo: {made} was not written")
    return clusters.resolve(), picture.resolve()


if __name__ == "__main__":
    main()
