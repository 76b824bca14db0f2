"""Choosing routines: DPRS and its constraints, the route problem, tune and bench."""
