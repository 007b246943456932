"""`python analysis/configurations.py`: runs raymia.analysis.configurations (see its --help)."""

import runpy

if __name__ == "__main__":
    runpy.run_module("raymia.analysis.configurations", run_name="__main__", alter_sys=True)
