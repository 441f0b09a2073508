"""The claims' measurements, one module per claim (see claims/ for the claims themselves)."""
