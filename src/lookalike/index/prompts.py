"""The generic prompts whose text embeddings tune an index for text queries.

A collection whose model has a text tower is searched with text as well as images, and
text embeddings sit apart from image embeddings (the modality gap), where approximate
indexes are known to lose recall. So :func:`~lookalike.index.tune.auto_index` also tunes
and confirms on text queries: the embeddings of these prompts, computed by the caller with
the collection's model::

    auto_index(vectors, text_queries=model.encode_text(tuning_prompts()))

The list (``tuning_prompts.txt`` in this package) is a few hundred everyday subjects,
scenes, objects, styles, documents and activities, written for this project. It is fixed:
changing it changes every text-query tuning measurement.
"""

from __future__ import annotations

from importlib import resources

__all__ = ["tuning_prompts", "PROMPTS_FILE"]

PROMPTS_FILE = "tuning_prompts.txt"


def tuning_prompts() -> list[str]:
    """The shipped prompts, in file order (comment lines starting with ``#`` and blank
    lines left out)."""
    text = resources.files(__package__).joinpath(PROMPTS_FILE).read_text(encoding="utf-8")
    return [s for s in (line.strip() for line in text.splitlines()) if s and not s.startswith("#")]
