"""embed_prepared asks a pin_memory function only once there are pixels to embed."""

from __future__ import annotations

import numpy as np

from lookalike.pipeline.embed import Prepared, embed_prepared


def test_pin_memory_function_is_asked_only_when_pixels_arrive() -> None:
    """Regression: the indexer decided pinning by loading the model, even when every item was
    reused or failed (a rerun must not load the model)."""
    asked: list[int] = []

    def on_gpu() -> bool:
        asked.append(1)
        return False

    nothing = [Prepared(i) for i in range(70)]
    out = list(embed_prepared(lambda x: x.reshape(len(x), -1), nothing, batch_size=8, pin_memory=on_gpu))
    assert [p.item for p, v in out] == list(range(70)) and all(v is None for _, v in out) and not asked

    mixed = [Prepared(i) for i in range(9)] + [Prepared(9, pixels=np.ones((1, 2, 2), np.float32))]
    out = list(embed_prepared(lambda x: x.reshape(len(x), -1), mixed, batch_size=4, pin_memory=on_gpu))
    assert [p.item for p, _ in out] == list(range(10)) and out[-1][1] is not None and asked == [1]
