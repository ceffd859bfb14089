"""Compiling a validated tree into a networkx DAG, and walking it (no knowledge of models)."""
