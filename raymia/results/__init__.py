"""What a sweep records and what the analysis reads: rows, the Pareto front, labels, tables,
importance."""
