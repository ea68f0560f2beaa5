"""Analyses and figures of curvatures and pruned models."""
