"""A pytest plugin that writes the evidence of claim tests as a report: see `plugin`."""
