"""`python analysis/mechanisms.py`: runs raymia.analysis.mechanisms (see its --help)."""

import runpy

if __name__ == "__main__":
    runpy.run_module("raymia.analysis.mechanisms", run_name="__main__", alter_sys=True)
