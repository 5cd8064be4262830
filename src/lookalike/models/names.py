"""Model names: parsing and listing, without importing torch (opening a collection needs only this).

A model name is ``lite`` or ``BACKEND:SPEC``, optionally with a head on top:

==============================================  =============================================
``lite``                                        the bundled offline default
``lite:SIZE``                                   lite with its letterbox at SIZE px (32..1024),
                                                e.g. ``lite:448``; ``lite:224`` is ``lite``
``openclip:ARCH/TAG``                           open_clip architecture + pretrained tag,
                                                e.g. ``openclip:ViT-B-32/laion2b_s34b_b79k``
``openclip:hf-hub:ORG/REPO``                    an open_clip model on the Hugging Face hub
``openclip:/path/to/dir``                       a local dir with ``open_clip_config.json``
``timm:NAME[.TAG]``                             a timm model, pooled features, e.g.
                                                ``timm:vit_small_patch14_dinov2.lvd142m``
``timm:hf-hub:ORG/REPO``, ``timm:/path/to/dir`` the same from the hub or a local dir
``BASE+head:DIR``                               a head folder (``lookalike train``, ``align``,
                                                ``distill``) on any base name above, e.g.
                                                ``lite+head:~/heads/logos``
==============================================  =============================================

A head name's :attr:`ModelSpec.canonical` holds the head's absolute folder (it loads);
its :attr:`ModelSpec.model_id` holds the head's id from ``DIR/head.json`` instead, so every
copy of one head (a collection keeps one) is one model.

A bare path to a local model directory also works; its backend is detected from the
files in it. Parsing is strict: a name that does not parse raises
:class:`~lookalike.errors.UnknownModel` with the closest valid spellings.
"""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelLoadError, UnknownModel
from ..fsutil import user_path

__all__ = ["ModelSpec", "KnownModel", "ModelInfo", "parse_model_name", "list_models", "KNOWN_MODELS", "BACKENDS",
           "DEFAULT_MODEL", "duplicate_defaults", "DuplicateDefaults", "read_head_json", "HEAD_FORMAT", "HEAD_FILE",
           "HEAD_MARK", "LITE_SIZES"]

BACKENDS = ("lite", "openclip", "timm")
DEFAULT_MODEL = "lite"
#: What separates a base name from its head folder: ``BASE+head:DIR``.
HEAD_MARK = "+head:"
#: The ``lite:SIZE`` sizes accepted: below 32 px EfficientNet's strides leave nothing to pool,
#: above 1024 px one image costs seconds and gigabytes.
LITE_SIZES = (32, 1024)
#: Bump when a head folder's layout changes; an older lookalike refuses a newer head with the fix.
HEAD_FORMAT = 1
HEAD_FILE = "head.json"


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model name.

    ``source`` is ``"builtin"`` (lite), ``"pretrained"`` (name + tag resolved by the backend
    library), ``"hf-hub"`` (a hub repo) or ``"local"`` (an absolute directory path).
    """

    backend: str
    source: str
    name: str
    tag: str | None = None
    #: A head on top (``BASE+head:DIR``): its absolute folder; None for a plain model.
    head: str | None = None

    @property
    def base(self) -> "ModelSpec":
        """The model under the head (this spec itself when it has none)."""
        return ModelSpec(self.backend, self.source, self.name, self.tag) if self.head else self

    @property
    def canonical(self) -> str:
        """The normalised name, as stored in manifests and accepted by :func:`parse_model_name`."""
        if self.head is not None:
            return f"{self.base.canonical}{HEAD_MARK}{self.head}"
        if self.backend == "lite":
            return f"lite:{self.tag}" if self.tag else "lite"
        if self.source == "hf-hub":
            return f"{self.backend}:hf-hub:{self.name}"
        if self.source == "local":
            return f"{self.backend}:{self.name}"
        sep = "/" if self.backend == "openclip" else "."
        return f"{self.backend}:{self.name}{sep + self.tag if self.tag else ''}"

    @property
    def model_id(self) -> str:
        """The model's identity in manifests: :attr:`canonical`, except that a head is named by
        its id (``name-digest8``, from ``DIR/head.json``) rather than its folder.

        Raises:
            UnknownModel, ModelLoadError: the head folder is gone or damaged.
        """
        if self.head is None:
            return self.canonical
        return f"{self.base.canonical}{HEAD_MARK}{head_id_of(Path(self.head))}"


@dataclass(frozen=True)
class KnownModel:
    """A curated, tested model name shown by ``lookalike models``."""

    name: str
    dim: int
    modalities: tuple[str, ...]
    hub_repo: str | None
    description: str
    #: How this model finds near duplicates by default (see :func:`duplicate_defaults`);
    #: None: the generic defaults.
    duplicates: "DuplicateDefaults | None" = None


@dataclass(frozen=True)
class ModelInfo:
    """What a model is, without loading it: used by :func:`lookalike.list_models`."""

    name: str
    backend: str
    dim: int | None
    modalities: tuple[str, ...]
    offline: bool
    description: str = ""


@dataclass(frozen=True)
class DuplicateDefaults:
    """A model's near-duplicate defaults: the cosine ``threshold`` of the semantic tier, and for
    the perceptual tier the largest pHash/dHash distance (``hash_bits``) and the cosine
    similarity a hash match needs as well (``perceptual_floor``)."""

    threshold: float
    hash_bits: int
    perceptual_floor: float


#: lite's, calibrated together on real images with planted edits (Debian clip art and photos,
#: a set disjoint from the benchmark's): `python benchmarks/bench_dupes.py calibrate`, which
#: sweeps all three (docs/benchmarks.md has the sweep).
LITE_DUPLICATES = DuplicateDefaults(threshold=0.94, hash_bits=4, perceptual_floor=0.70)
#: For models not calibrated here (their weights cannot be downloaded in this project's
#: build): conservative priors, since a false duplicate costs more than a missed one.
GENERIC_DUPLICATES = DuplicateDefaults(threshold=0.95, hash_bits=4, perceptual_floor=0.80)

KNOWN_MODELS: tuple[KnownModel, ...] = (
    KnownModel("lite", 1280, ("image", "text"), None,
               "EfficientNet-Lite0 (ImageNet) + MiniLM text bridge; bundled, no network; weak text search",
               duplicates=LITE_DUPLICATES),
    KnownModel("openclip:ViT-B-32/laion2b_s34b_b79k", 512, ("image", "text"), "laion/CLIP-ViT-B-32-laion2B-s34B-b79K",
               "OpenCLIP ViT-B/32 on LAION-2B: good general text and image search"),
    KnownModel("openclip:ViT-B-16-SigLIP/webli", 768, ("image", "text"), "timm/ViT-B-16-SigLIP",
               "SigLIP ViT-B/16: strong text search"),
    KnownModel("openclip:ViT-L-14/openai", 768, ("image", "text"), "timm/vit_large_patch14_clip_224.openai",
               "OpenAI CLIP ViT-L/14: high quality, slow on CPU"),
    KnownModel("timm:vit_small_patch14_dinov2.lvd142m", 384, ("image",), "timm/vit_small_patch14_dinov2.lvd142m",
               "DINOv2 ViT-S/14: excellent image-to-image similarity, no text"),
    KnownModel("timm:vit_base_patch14_dinov2.lvd142m", 768, ("image",), "timm/vit_base_patch14_dinov2.lvd142m",
               "DINOv2 ViT-B/14: stronger image-to-image similarity, no text"),
    KnownModel("timm:convnext_tiny.in12k_ft_in1k", 768, ("image",), "timm/convnext_tiny.in12k_ft_in1k",
               "ConvNeXt-T CNN features, no text"),
)


def _close(word: str, choices: list[str]) -> str:
    near = difflib.get_close_matches(word, choices, n=3, cutoff=0.5)
    return f" Did you mean {', '.join(repr(n) for n in near)}?" if near else ""


def _looks_like_path(text: str) -> bool:
    return text.startswith(("/", "./", "../", "~")) or os.sep in text and os.path.exists(os.path.expanduser(text))


def _detect_local_backend(path: Path) -> str | None:
    if (path / "open_clip_config.json").is_file():
        return "openclip"
    if (path / "config.json").is_file() and any(
        (path / f).is_file() for f in ("model.safetensors", "pytorch_model.bin", "pytorch_model.pth", "model.pth")
    ):
        return "timm"
    return None


_LOCAL_FILES = {
    "openclip": ("open_clip_config.json", "open_clip_config.json and open_clip_model.safetensors"),
    "timm": ("config.json", "config.json and model.safetensors"),
}


def _parse_local(backend: str, text: str, original: str) -> ModelSpec:
    if not text.strip():
        raise UnknownModel(f"model '{original}': local-dir: needs a folder, as in '{backend}:local-dir:/path/to/model'")
    path = Path(user_path(text))
    config, layout = _LOCAL_FILES[backend]
    if not path.is_dir():
        raise UnknownModel(
            f"model '{original}': {path} is not a directory. A local {backend} model is a folder holding "
            f"{layout} (the layout the Hugging Face hub uses)."
        )
    if not (path / config).is_file():
        detected = _detect_local_backend(path)
        hint = f" It holds a {detected} model: use '{detected}:{path}'." if detected and detected != backend else ""
        raise UnknownModel(f"model '{original}': the folder {path} has no {config}, so it is not a local {backend} "
                           f"model (that needs {layout}).{hint}")
    return ModelSpec(backend, "local", str(path))


def parse_model_name(name: str) -> ModelSpec:
    """Parse a model name strictly; see the module docstring for the forms.

    Raises:
        UnknownModel: the name does not parse, with the fix in the message.
        ModelLoadError: a head folder whose head.json is damaged or from a newer lookalike.
    """
    original = name
    name = name.strip()
    if not name:
        raise UnknownModel("empty model name; use 'lite' or see `lookalike models`")
    if HEAD_MARK in name:
        return _parse_head(name, original)
    if name.lower() == "lite":
        return ModelSpec("lite", "builtin", "lite")
    if name.lower().startswith("lite:"):
        return _parse_lite_size(name[len("lite:"):], original)
    backend, sep, rest = name.partition(":")
    if not sep or _looks_like_path(name):
        return _parse_bare(name, original)
    backend = backend.lower()
    if backend not in ("openclip", "timm"):
        raise UnknownModel(
            f"unknown model backend '{backend}' in '{original}'; use one of lite, openclip:, timm:."
            + _backend_hint(backend, rest)
        )
    if not rest:
        raise UnknownModel(f"model '{original}' names the backend but no model; e.g. {_example(backend)}")
    if rest.startswith("hf-hub:"):
        repo = rest[len("hf-hub:"):]
        if repo.count("/") != 1 or not all(repo.split("/")):
            raise UnknownModel(f"model '{original}': a hub repo is written hf-hub:ORG/REPO")
        return ModelSpec(backend, "hf-hub", repo)
    if rest.startswith("local-dir:"):
        return _parse_local(backend, rest[len("local-dir:"):], original)
    if _looks_like_path(rest) or Path(os.path.expanduser(rest)).is_dir():
        return _parse_local(backend, rest, original)
    if backend == "openclip":
        arch, slash, tag = rest.partition("/")
        if not slash or not arch or not tag:
            raise UnknownModel(
                f"model '{original}': an open_clip name needs architecture and pretrained tag, "
                f"as in {_example('openclip')}.{_openclip_tags_hint(arch)}"
            )
        return ModelSpec("openclip", "pretrained", arch, tag)
    arch, dot, tag = rest.partition(".")
    if not arch or (dot and not tag):
        raise UnknownModel(f"model '{original}': a timm name is NAME or NAME.TAG, as in {_example('timm')}")
    return ModelSpec("timm", "pretrained", arch, tag or None)


def _parse_bare(name: str, original: str) -> ModelSpec:
    """A name with no backend prefix: only a local model directory is acceptable."""
    path = Path(os.path.expanduser(name))
    if path.is_dir():
        detected = _detect_local_backend(path)
        if detected is None:
            raise UnknownModel(
                f"model '{original}': the folder {path} holds neither open_clip_config.json (open_clip) "
                "nor config.json + model.safetensors (timm)."
            )
        return _parse_local(detected, name, original)
    raise UnknownModel(
        f"unknown model '{original}'.{_close(name, [m.name for m in KNOWN_MODELS])} "
        "Names are 'lite', 'lite:SIZE', 'openclip:ARCH/TAG', 'openclip:hf-hub:ORG/REPO', 'timm:NAME', a local "
        "model folder, or any of these +head:DIR; `lookalike models` lists tested ones."
    )


def _parse_lite_size(text: str, original: str) -> ModelSpec:
    low, high = LITE_SIZES
    if not text.strip().isdigit():
        raise UnknownModel(f"model '{original}': lite:SIZE takes a size in pixels, e.g. 'lite:448' "
                           f"(lite's letterbox at 448 px); plain 'lite' is 224 px")
    size = int(text)
    if not low <= size <= high:
        raise UnknownModel(f"model '{original}': lite's size must be {low} to {high} px, not {size}; "
                           "'lite' is 224, 'lite:448' a sharper, 4x slower view")
    return ModelSpec("lite", "builtin", "lite") if size == 224 else ModelSpec("lite", "builtin", "lite", tag=str(size))


def _parse_head(name: str, original: str) -> ModelSpec:
    base_name, _, folder = name.partition(HEAD_MARK)
    if not base_name.strip():
        raise UnknownModel(f"model '{original}': a head needs its base model in front, as in 'lite+head:{folder}'")
    if not folder.strip():
        raise UnknownModel(f"model '{original}': '+head:' needs the head's folder, as in '{base_name}+head:~/heads/logos'")
    if HEAD_MARK in folder:
        raise UnknownModel(f"model '{original}': one head per model; a head trained on a head model is not supported")
    path = Path(user_path(folder.strip()))
    head_id_of(path)  # the folder must hold a head: a typo fails here, not at the first embedding
    base = parse_model_name(base_name)
    return ModelSpec(base.backend, base.source, base.name, base.tag, head=str(path))


def read_head_json(folder: Path) -> dict:
    """``folder/head.json`` as a dict, checked for its format (no torch: names need only this).

    Raises:
        UnknownModel: no such folder, or no ``head.json`` in it.
        ModelLoadError: unreadable JSON, or a format from a newer lookalike.
    """
    how = "give the folder `lookalike train`, `align` or `distill` wrote (their --out)"
    if not folder.is_dir():
        raise UnknownModel(f"head folder {folder} does not exist; {how}")
    f = folder / HEAD_FILE
    if not f.is_file():
        raise UnknownModel(f"{folder} is not a head folder: it has no {HEAD_FILE}; {how}")
    try:
        meta = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{f}: cannot read the head description ({exc}); save the head again") from exc
    if not isinstance(meta, dict) or not isinstance(meta.get("id"), str):
        raise ModelLoadError(f"{f}: not a head description (a JSON object with an id); save the head again")
    if meta.get("format") != HEAD_FORMAT:
        raise ModelLoadError(f"{f}: head format {meta.get('format')!r}, but this lookalike reads format "
                             f"{HEAD_FORMAT}; upgrade lookalike, or save the head again with this one")
    return meta


def head_id_of(folder: Path) -> str:
    """The id a head folder's ``head.json`` records (``name-digest8``)."""
    return str(read_head_json(folder)["id"])


#: Names people reach for that are not backends, mapped to the backend that serves them.
_BACKEND_ALIASES = {"open_clip": "openclip", "open-clip": "openclip", "clip": "openclip", "siglip": "openclip",
                    "dinov2": "timm"}


def _backend_hint(backend: str, rest: str) -> str:
    """' Did you mean 'openclip:REST'?' for an alias or a misspelt backend, else ''."""
    if backend in ("hf-hub", "local-dir"):
        return (f" A {backend}: name needs a backend in front: "
                f"'openclip:{backend}:{rest}' or 'timm:{backend}:{rest}'.")
    target = _BACKEND_ALIASES.get(backend)
    if target is None:
        near = difflib.get_close_matches(backend, ["openclip", "timm", *_BACKEND_ALIASES], n=1, cutoff=0.6)
        target = _BACKEND_ALIASES.get(near[0], near[0]) if near else None
    if target is None:
        return ""
    return f" Did you mean '{target}:{rest}'?" if rest else f" Did you mean '{target}:'?"


def _example(backend: str) -> str:
    return "'openclip:ViT-B-32/laion2b_s34b_b79k'" if backend == "openclip" else "'timm:vit_small_patch14_dinov2.lvd142m'"


def _openclip_tags_hint(arch: str) -> str:
    try:
        import open_clip
    except ImportError:
        return ""
    tags = [t for a, t in open_clip.list_pretrained() if a == arch]
    return f" Tags for {arch}: {', '.join(tags[:8])}." if tags else ""


def _hub_cached(repo: str | None) -> bool:
    if repo is None:
        return True
    try:
        from huggingface_hub import scan_cache_dir
    except ImportError:
        return False
    try:
        return any(r.repo_id == repo for r in scan_cache_dir().repos)
    except Exception:  # noqa: BLE001 - a missing or unreadable cache simply means "not cached"
        return False


def duplicate_defaults(model_id: str) -> DuplicateDefaults:
    """A model's near-duplicate defaults, by canonical name (the generic ones for models not
    calibrated here)."""
    known = next((m for m in KNOWN_MODELS if m.name == model_id), None)
    return known.duplicates if known is not None and known.duplicates is not None else GENERIC_DUPLICATES


def list_models() -> list[ModelInfo]:
    """The tested model names, with dimensions, modalities and whether they work offline now."""
    return [
        ModelInfo(
            name=m.name,
            backend=m.name.partition(":")[0] if ":" in m.name else m.name,
            dim=m.dim,
            modalities=m.modalities,
            offline=_hub_cached(m.hub_repo),
            description=m.description,
        )
        for m in KNOWN_MODELS
    ]
