"""`python analysis/defences.py`: runs raymia.analysis.defences (see its --help)."""

import runpy

if __name__ == "__main__":
    runpy.run_module("raymia.analysis.defences", run_name="__main__", alter_sys=True)
