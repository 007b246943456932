"""`python analysis/roc.py`: runs raymia.analysis.roc (see its --help)."""

import runpy

if __name__ == "__main__":
    runpy.run_module("raymia.analysis.roc", run_name="__main__", alter_sys=True)
