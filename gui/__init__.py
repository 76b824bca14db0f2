"""LayerLab's Qt window: thin views over the engine's session; no numerics, no ONNX Runtime."""

__all__: list[str] = []
