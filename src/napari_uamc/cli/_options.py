"""Argument types and options shared by the ``uamc`` sub-commands (argparse only, no torch)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

#: Choices of ``--precision``; the same as ``napari_uamc.engine.device.PRECISIONS`` (which
#: imports torch, too slow for building the parsers).
PRECISIONS = ("auto", "float32", "bfloat16")
#: Metavar of an option taking one value per canonical axis.
XYZ = ("X", "Y", "Z")


def integer(minimum: int, what: str) -> Callable[[str], int]:
    """An argparse type: an integer of at least ``minimum``; its messages name ``what``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be an integer, not {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{what} must be at least {minimum}, not {value}")
        return value

    return parse


def add_int_option(parser: argparse.ArgumentParser, flag: str, *, minimum: int, **kwargs: Any) -> None:
    """Add ``flag`` taking integers of at least ``minimum`` (argparse refuses others, naming it)."""
    parser.add_argument(flag, type=integer(minimum, flag), **kwargs)


def add_device_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--device`` (default ``auto``)."""
    parser.add_argument(
        "--device",
        default="auto",
        help="auto (CUDA if available, else CPU), cpu, cuda, cuda:N or mps (default auto)",
    )


def add_precision_option(parser: argparse.ArgumentParser, *, default: str | None = None) -> None:
    """Add ``--precision``; ``default=None`` leaves the config's (or the resumed run's) setting."""
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=default,
        help="arithmetic: auto uses bfloat16 where the hardware runs it natively (recent CPUs, "
        "CUDA), else float32 (default auto)",
    )
