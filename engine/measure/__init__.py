"""Measuring on ONNX Runtime: sessions and timing, kernel attribution, the profiler, prediction, cache."""
