"""One trial: its config, training, reference models, measurement, and auditing a saved model."""
