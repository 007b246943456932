"""Analysis of sweep directories: Pareto front, mechanism table, ROC plots, report.

Each module is a script too: ``python analysis/pareto.py DIR`` (the files in the repository's
``analysis/`` folder run these modules) or ``python -m raymia.analysis.pareto DIR``. They
read Parquet only, through `raymia.results.rows`, and never import Ray.
"""
