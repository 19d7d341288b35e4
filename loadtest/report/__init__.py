"""Reports: one module per kind, HTML and plots shared."""
