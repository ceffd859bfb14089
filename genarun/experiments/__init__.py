"""Experiments of trajectories: progress reports, topology over stored runs, plots and exports."""
