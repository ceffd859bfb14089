"""Node kinds: the kind registry's entries and one module per kind."""
