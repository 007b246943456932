"""`python analysis/reproduction.py`: runs raymia.analysis.reproduction (see its --help)."""

import runpy

if __name__ == "__main__":
    runpy.run_module("raymia.analysis.reproduction", run_name="__main__", alter_sys=True)
