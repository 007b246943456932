"""Data sets, their splits, and the training batches cut from them."""
