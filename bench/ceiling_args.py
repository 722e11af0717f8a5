"""The command line shared by the ceiling processes the live benchmark starts (faust agent, Quix Streams app)."""

from __future__ import annotations

import argparse


def ceiling_parser(prog: str) -> argparse.ArgumentParser:
    """Where to read (``--topics``, from the beginning, as consumer group ``--group``), where to write one small
    output per input (``--out-topic``), and after how many messages to stop (``--total``)."""
    p = argparse.ArgumentParser(prog=prog)
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--group", required=True)
    p.add_argument("--out-topic", required=True)
    p.add_argument("--total", type=int, required=True)
    p.add_argument("--topics", nargs="+", required=True)
    return p
