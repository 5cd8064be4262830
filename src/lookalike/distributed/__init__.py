"""Thin Ray wiring over library functions: the work itself lives in the layers below.

Nothing is imported here, so ``import lookalike.distributed`` never needs Ray; each module
imports it inside its functions and raises :class:`~lookalike.errors.MissingExtra` when it
is absent.
"""
