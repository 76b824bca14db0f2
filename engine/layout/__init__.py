"""Layered DAG layout for the graph view: positions only."""
