"""`python analysis/report.py`: runs raymia.analysis.report (see its --help)."""

import runpy

if __name__ == "__main__":
    runpy.run_module("raymia.analysis.report", run_name="__main__", alter_sys=True)
