"""ci-fanout."""
