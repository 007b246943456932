"""The networks a trial trains: the built-in ones, the `arch` setting, stacked ensembles."""
