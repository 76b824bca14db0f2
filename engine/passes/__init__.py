"""Transforms as passes (precision, fp16, prune, low-rank), model in, result out; ``manager`` composes a plan."""
