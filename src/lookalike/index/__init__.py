"""Nearest-neighbour search over a collection's vectors."""

from .exact import exact_topk

__all__ = ["exact_topk"]
