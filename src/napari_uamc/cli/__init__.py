"""The ``uamc`` command: one sub-command per module in this package.

Each sub-command module defines ``add_parser(subparsers)``, which registers its parser and
sets ``func`` to the function that runs it. Heavy imports (torch) happen inside ``func``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from napari_uamc import __version__
from napari_uamc.errors import UamcError

#: Sub-command modules, in the order ``uamc --help`` lists them.
#: Modules whose name differs from their command (``import`` is a Python keyword).
MODULES = {"import": "import_"}
COMMANDS = ("import", "phantoms", "train", "segment", "finetune", "evaluate")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="uamc",
        description="napari-uamc: semi-supervised 3D segmentation with UG-MCL "
        "(uncertainty-guided mutual consistency learning).",
    )
    parser.add_argument("--version", action="version", version=f"napari-uamc {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in COMMANDS:
        importlib.import_module(f"napari_uamc.cli.{MODULES.get(name, name)}").add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``uamc`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        result = args.func(args)
    except UamcError as error:
        print(f"uamc {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"uamc {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
