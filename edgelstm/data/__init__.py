"""Data readers, built-in datasets and the in-memory shapes training consumes."""
