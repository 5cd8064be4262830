"""The exception tree of lookalike.

Every error the library raises on purpose derives from :class:`LookalikeError`, so
``except lookalike.LookalikeError`` catches all of them. Each message names the
thing at fault, the reason, and what to do about it::

    LookalikeError
    ├── UnknownModel          (also a ValueError)  a model name that does not parse or resolve
    ├── ModelLoadError                             the name resolved but the weights could not load
    ├── MissingExtra          (also an ImportError) an optional backend is not installed
    ├── UnsupportedModality   (also a ValueError)  e.g. a text query on an image-only model
    ├── UnreadableImage                            one image could not be opened or decoded
    ├── QueryError            (also a ValueError)  a search query that does not parse or resolve
    │   ├── ItemNotFound                           an item id that the collection does not hold
    │   ├── PersonNotFound                         a person (id or name) the collection does not hold
    │   └── FaceNotFound                           a face id the collection does not hold
    ├── InvalidArgument       (also a ValueError)  a setting or parameter outside what it accepts
    ├── IndexBuildError                            no approximate index could be built for the vectors
    └── CollectionError
        ├── CollectionNotFound
        ├── CollectionExists
        ├── CollectionMismatch                     the collection was made with another model
        └── CollectionCorrupt                      files on disk disagree beyond repair
"""

from __future__ import annotations

__all__ = [
    "LookalikeError",
    "UnknownModel",
    "ModelLoadError",
    "MissingExtra",
    "UnsupportedModality",
    "UnreadableImage",
    "QueryError",
    "ItemNotFound",
    "PersonNotFound",
    "FaceNotFound",
    "InvalidArgument",
    "IndexBuildError",
    "CollectionError",
    "CollectionNotFound",
    "CollectionExists",
    "CollectionMismatch",
    "CollectionCorrupt",
]


class LookalikeError(Exception):
    """Base class of every error lookalike raises on purpose."""


class UnknownModel(LookalikeError, ValueError):
    """A model name that does not parse, or names nothing known."""


class ModelLoadError(LookalikeError):
    """A model name resolved, but its weights or config could not be loaded."""


class MissingExtra(LookalikeError, ImportError):
    """An optional dependency is missing; the message carries the pip command that installs it.

    ``extra`` names the lookalike extra that brings it (``pip install 'lookalike[faiss]'``);
    ``None`` means a dependency of lookalike itself, so the installation is incomplete.
    """

    def __init__(self, package: str, extra: str | None, purpose: str) -> None:
        self.package = package
        self.extra = extra
        if extra is None:
            fix = f"pip install '{package}' (lookalike depends on it, so this installation is incomplete)"
        else:
            fix = f"pip install 'lookalike[{extra}]'"
        super().__init__(f"{purpose} needs the package '{package}', which is not installed. Install it with: {fix}")


class UnsupportedModality(LookalikeError, ValueError):
    """The model cannot embed this kind of input (for example text on an image-only model)."""


class UnreadableImage(LookalikeError):
    """One image could not be read or decoded.

    ``path`` is the file (or a description of the in-memory input) and ``reason`` a short,
    stable, human-readable cause such as ``"truncated file"`` or ``"not an image"``.
    """

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class QueryError(LookalikeError, ValueError):
    """A search query that does not parse, or refers to something that does not exist."""


class ItemNotFound(QueryError):
    """An item id that the collection does not hold (or whose image never embedded)."""

    def __init__(self, item_id: int, message: str) -> None:
        self.item_id = item_id
        super().__init__(message)


class PersonNotFound(QueryError):
    """A person, by id or name, that the collection does not hold (``person``: what was asked for)."""

    def __init__(self, person: int | str, message: str) -> None:
        self.person = person
        super().__init__(message)


class FaceNotFound(QueryError):
    """A face id that the collection does not hold."""

    def __init__(self, face_id: int, message: str) -> None:
        self.face_id = face_id
        super().__init__(message)


class InvalidArgument(LookalikeError, ValueError):
    """A setting or parameter outside what it accepts (an index mode, a recall target, a
    thumbnail size...); the message names the value, what is allowed and how to write it."""


class IndexBuildError(LookalikeError):
    """No approximate index could be built for these vectors (too few to train, say)."""


class CollectionError(LookalikeError):
    """Base class of errors about a collection directory."""


class CollectionNotFound(CollectionError):
    """No collection exists at the given path."""


class CollectionExists(CollectionError):
    """A collection already exists where a new one was to be created."""


class CollectionMismatch(CollectionError):
    """The collection was built with a different model or preprocessing than the one asked for."""


class CollectionCorrupt(CollectionError):
    """The collection's files disagree in a way that cannot be repaired automatically."""
