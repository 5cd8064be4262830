"""Pictures and pages of a collection's clusters, labels and map.

- :func:`map_png` and :func:`matrix_png` (:mod:`.plots`): PNG files drawn with matplotlib
  (the ``explore`` extra).
- :func:`clusters_html` (:mod:`.sheets`): self-contained contact sheets of the clusters.
- :func:`write_report` (:mod:`.site`): ``lookalike report``'s static site, with an
  interactive map, that opens offline.

The clusters, labels and map themselves are computed and stored by the collection
(:meth:`lookalike.Collection.cluster`, ``label``, ``map``); this package only shows them.
"""

from __future__ import annotations

from .plots import map_png, matrix_png
from .sheets import clusters_html
from .site import write_report

__all__ = ["clusters_html", "map_png", "matrix_png", "write_report"]
