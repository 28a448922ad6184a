"""Rule loading, compilation and evaluation."""
