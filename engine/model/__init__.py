"""Plain evented data: the session, the plan, trials. No I/O, no ONNX Runtime."""
