"""Privacy statistics of a trained model: logits, metrics, leakage nulls, epsilon bounds, DtC,
canaries."""
