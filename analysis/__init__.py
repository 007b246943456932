"""Analysis scripts over sweep directories: Pareto front, mechanism table, ROC plots, report.

Each module is also a script (``python analysis/pareto.py DIR``). They read Parquet only,
through `raymia.results`, and never import Ray (directly or through `raymia.sweep`).
"""
