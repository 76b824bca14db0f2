"""Write a label-less ``.npz`` evaluator for a model: N generated valid inputs (fidelity to fp32).

For zoo models that ship no evaluation data (not collected by pytest). The inputs come from the
same generator ``profile`` uses without an evaluator (ids within each embedding table, masks all
ones, images uniform in [0, 1)), one seed per sample, so the set is reproducible. Inputs need a
leading batch dim of 1 (the .npz evaluator's rows are that axis):

    python tests/bench/make_fidelity_set.py minilm-l3 --dim sequence_length=128 -n 48 -o minilm.npz
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from engine.cli.common import add_shape_arguments, load_graph, resolve_model  # noqa: E402
from engine.ir.feeds import random_feeds  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="ONNX file or example name")
    add_shape_arguments(parser)
    parser.add_argument("-n", "--samples", type=int, default=48)
    parser.add_argument("-o", "--output", required=True)
    args = parser.parse_args()
    path, defaults = resolve_model(args.model)
    graph = load_graph(args, path, defaults)
    samples = [random_feeds(graph, seed=1000 + i) for i in range(args.samples)]
    unbatched = {name: a.shape for name, a in samples[0].items() if a.ndim == 0 or a.shape[0] != 1}
    if unbatched:  # silero-vad's sr (a scalar), silero-vad-seq's input (sequence_length x 576)
        shown = ", ".join(f"{n} {'x'.join(map(str, s)) or 'scalar'}" for n, s in unbatched.items())
        print(f"{args.model}: input(s) {shown} have no leading batch dim of 1, which an .npz evaluator's rows need; "
              "write a .py evaluator (README: Evaluators)", file=sys.stderr)
        return 2
    # An .npz evaluator's rows are samples along the first axis, which is the model's batch axis (1 here).
    arrays = {f"input:{name}": np.concatenate([s[name] for s in samples]) for name in samples[0]}
    np.savez(args.output, **arrays)
    print(f"{args.output}: {args.samples} samples of {', '.join(f'{k[6:]} {v.shape[1:]}' for k, v in arrays.items())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
