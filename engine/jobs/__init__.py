"""Running engine work for the window: the worker process and the catalogue of job entry points."""
