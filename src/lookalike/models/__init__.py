"""Embedding models: the registry of names and one module per backend."""
