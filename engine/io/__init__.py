"""Files: the session file schema, autosave sidecars, the evaluator trust list, atomic writes, examples."""
