"""The package version, in one place: the CLI, the server, manifests and packaging read it here."""

__all__ = ["__version__"]

__version__ = "0.1.0"
