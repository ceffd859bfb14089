"""Executing compiled trees: seeds, run state, the scheduler, batching and progress."""
