"""The helpers of benchmarks/bench_faces.py's ``pairs`` and ``detect``: who is who in the pairs of test
faces, the confusion at the threshold, and the per-photo timing summary (no dlib, no photos)."""

from __future__ import annotations

from benchmarks.bench_faces import IDENTICAL_PICTURES, FaceSample, confusion, label_pairs, ms_summary, person_of


def test_pairs_are_labelled_by_person_and_identical_picture() -> None:
    faces = [FaceSample("obama2.jpg", 0, person_of("obama2.jpg")), FaceSample("32bit.png", 0, person_of("32bit.png")),
             FaceSample("biden.jpg", 0, person_of("biden.jpg")), FaceSample("32bit.png", 1, "obama")]
    pairs = {(i, j): (same, twin) for i, j, same, twin in label_pairs(faces)}
    assert len(pairs) == 6  # every unordered pair once, none with itself
    assert pairs[(0, 1)] == (True, True)  # the same face in the PNG copy
    assert pairs[(0, 2)] == (False, False) and pairs[(1, 2)] == (False, False)
    assert pairs[(0, 3)] == (True, False)  # another face of the copy is not the same face
    assert pairs[(1, 3)] == (True, False)  # two faces of one picture are not copies of each other
    assert frozenset({"32bit.png", "obama2.jpg"}) in IDENTICAL_PICTURES


def test_confusion_counts_same_as_positive_and_the_threshold_as_different() -> None:
    c = confusion([0.2, 0.6, 0.59, 0.7, 0.1], [True, True, False, False, False], 0.6)
    assert c == {"TP": 1, "FN": 1, "FP": 2, "TN": 1}


def test_ms_summary() -> None:
    assert ms_summary([]) == "no photos"
    assert ms_summary([0.001 * i for i in range(1, 101)]) == "median 50 ms, p95 95 ms"
