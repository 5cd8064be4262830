"""What every command shares: the consoles, the default collection, error exits, and the
spelling fixes applied to arguments before click reads them."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any, NoReturn, Sequence

import typer
from rich.console import Console
from rich.markup import escape

from ..errors import InvalidArgument, LookalikeError, QueryError, UnknownModel

# Off a terminal (logs, `| less`) rich would assume 80 columns and fold every long path;
# a wide page keeps one result per line.
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True)

ENV_COLLECTION = "LOOKALIKE_COLLECTION"


def default_collection() -> Path:
    """``$LOOKALIKE_COLLECTION``, else ``$XDG_DATA_HOME/lookalike/default.lkl`` (``~/.local/share/...``)."""
    if os.environ.get(ENV_COLLECTION):
        return Path(os.environ[ENV_COLLECTION]).expanduser()
    data_home = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return data_home / "lookalike" / "default.lkl"


CollectionOpt = typer.Option(
    None, "--collection", "-c", help=f"Collection directory (default: ${ENV_COLLECTION} or {default_collection()})"
)
DeviceOpt = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:1, mps")


def fail(exc: LookalikeError) -> NoReturn:
    """Print one unwrapped error line and exit: 2 for input to fix (a query, a model name, an
    option value), 1 for everything else."""
    # Taken literally: paths and messages may hold "[...]" or ":name:".
    err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True, emoji=False)
    raise typer.Exit(2 if isinstance(exc, (QueryError, UnknownModel, InvalidArgument)) else 1)


def parse_bytes(text: str, option: str = "--memory") -> int:
    """'500MB', '2GB', '1.5g', '1000000' -> bytes (binary units)."""
    units = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "m": 1 << 20, "mb": 1 << 20, "g": 1 << 30, "gb": 1 << 30,
             "t": 1 << 40, "tb": 1 << 40}
    t = text.strip().lower().replace(" ", "")
    num = t.rstrip("kmgtb")
    try:
        return int(float(num) * units[t[len(num):]])
    except (ValueError, KeyError):
        raise InvalidArgument(f"{option}: cannot read the size {text!r}; write it like 500MB or 2GB") from None


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


_NEGATIVE_WEIGHT = re.compile(r"^-((?:\d+\.?\d*|\.\d+):.+)$", re.DOTALL)


def spell_negative_weights(args: Sequence[str]) -> list[str]:
    """``search -2:dog + cat`` -> ``search - 2:dog + cat``: click would read ``-2:dog`` as an
    option; as an operator and a weight it means the same (``+ -2:x`` is ``- 2:x``, and
    ``- -2:x`` is ``+ 2:x``). Only the ``search`` command's arguments are touched."""
    args = list(args)
    if not args or args[0] != "search":
        return args
    out_args: list[str] = [args[0]]
    for token in args[1:]:
        m = _NEGATIVE_WEIGHT.match(token)
        if m is None:
            out_args.append(token)
        elif out_args[-1] in ("+", "-") and len(out_args) > 1:
            out_args[-1] = "-" if out_args[-1] == "+" else "+"
            out_args.append(m.group(1))
        else:
            out_args += ["-", m.group(1)]
    return out_args



def describe_runtime(model: Any) -> str:
    """How a loaded model runs: ``openvino, fp32 (auto: openvino (torch 41, onnx 128, openvino 180 img/s))``."""
    line = f"{model.runtime}, {model.precision}"
    return f"{line} (auto: {model.measurement.summary()})" if model.measurement is not None else line
