"""Entry point for `ray submit cluster.yaml scripts/sweep_entry.py -- <sweep args>`.

It is `raymia sweep --address auto <sweep args>`: the same code path, joined to the cluster
that `ray submit` runs it on. An --address among the arguments wins over `auto`.
"""

from __future__ import annotations

import sys

from raymia.cli import main

if __name__ == "__main__":
    sys.exit(main(["sweep", "--address", "auto", *sys.argv[1:]]))
