"""Data sources, versioned datasets, profiling and data-quality reports."""
