"""The evidence pytest plugin (placeholder until built)."""
