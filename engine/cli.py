"""Command-line interface: ``python -m engine <command> ...``.

Each command lives in a small function here that calls the library; errors the user can
fix (:class:`engine.errors.SproutError`) print one line on stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys

from engine.errors import SproutError


def _cmd_inspect(args: argparse.Namespace) -> int:
    from engine import data

    report = data.inspect(args.data, image_size=args.image_size, channels=args.channels)
    json.dump(report.to_dict(), sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engine", description="Sprout's search engine.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("inspect", help="report on a labelled image folder or zip, as JSON")
    p.add_argument("data", help="a folder with one sub-folder per class, or a .zip of one")
    p.add_argument("--image-size", type=int, default=None, help="side of the square input (default: chosen from the data)")
    p.add_argument("--channels", choices=["auto", "1", "3"], default="auto")
    p.set_defaults(func=_cmd_inspect)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except SproutError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
