"""`uamc evaluate` (being written)."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("evaluate", help="(not available yet)")
    parser.set_defaults(func=lambda args: parser.error("not available yet"))
