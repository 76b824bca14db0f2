"""Where accuracy comes from: the evaluator contract, script and .npz evaluators, the sensitivity sweep."""
