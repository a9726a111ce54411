"""The command line: one module per verb; the only place that prints errors and exits."""
