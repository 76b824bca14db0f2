"""The model as LayerLab reads it: load and validate ONNX, shapes, per-op facts."""
