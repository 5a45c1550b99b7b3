"""Command line: `python -m cygrad info` (and the `cygrad` console script)."""
import argparse
import sys


def _info(args):
    import cygrad
    cygrad.show_config()
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="cygrad", description="cygrad command line")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("info", help="print version, OpenMP, instruction set and threads")
    p.set_defaults(func=_info)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
