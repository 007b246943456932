"""`python analysis/pareto.py`: runs raymia.analysis.pareto (see its --help)."""

import runpy

if __name__ == "__main__":
    runpy.run_module("raymia.analysis.pareto", run_name="__main__", alter_sys=True)
