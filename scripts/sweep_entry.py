"""Entry point for `ray submit cluster.yaml scripts/sweep_entry.py -- <sweep args>`.

It is `raymia sweep --address auto <sweep args>`: the same code path, joined to the cluster
that `ray submit` runs it on. An --address among the arguments wins over `auto`.

`ray submit` copies this script into the head's home, beside the checkout at ~/raymia; Python
puts the script's folder first on sys.path, where that checkout (a folder named raymia) would
shadow the installed package. The folder is taken off the path before raymia is imported
(Ray then leaves it off the workers' paths too; `raymia.sweep.worker.use_installed_package`
guards them against the working directory).
"""

from __future__ import annotations

import os
import sys

_HERE = os.path.dirname(os.path.realpath(__file__))
sys.path[:] = [p for p in sys.path if os.path.realpath(p or os.curdir) != _HERE]

from raymia.cli import main  # noqa: E402  (after the path is cleaned)

if __name__ == "__main__":
    sys.exit(main(["sweep", "--address", "auto", *sys.argv[1:]]))
