"""Evaluator for the ``ppocr-rec`` example: rendered English words, exact-match word accuracy.

Follows LayerLab's evaluator contract:

- ``samples()`` yields ``({"x": float32 NCHW}, word)`` in a fixed order: even indices are clean
  renderings, odd ones degraded (small rotation, downscale, blur, noise, JPEG). 200 by default;
  ``$LAYERLAB_PPOCR_SAMPLES`` overrides. Everything is seeded, so every run sees the same pixels.
- ``metric(outputs, labels)`` is the fraction of words decoded exactly by greedy CTC decoding.
- ``calibration()`` yields input dicts rendered from a separate word list (no overlap with samples).

Images follow RapidOCR's preprocessing: height 48, width scaled to keep the aspect (at most 320),
pixels mapped to [-1, 1], padded with 0 on the right; here the padded width is a multiple of 8
(at least 64). The character table is the model's ``character`` metadata with the CTC blank at
index 0 and a space appended last, as RapidOCR's ``CTCLabelDecode`` builds it. The model is found
through ``$LAYERLAB_MODEL`` or, failing that, the fetched ``ppocr-rec`` example in the cache.
"""

from __future__ import annotations

import functools
import io
import logging
import math
import os
from collections.abc import Iterator, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

__all__ = ["CALIBRATION_WORDS", "WORDS", "calibration", "characters", "decode", "metric", "render", "samples"]

logger = logging.getLogger(__name__)

METRIC_NAME = "word_accuracy"  # exact-match words, shown by bench, tune and the window
INPUT_NAME = "x"
HEIGHT = 48
MIN_WIDTH = 64
MAX_WIDTH = 320
DEFAULT_COUNT = 200
_SEED = 48_320
_CALIBRATION_SEED = 7_919

# English words, numbers and mixed tokens; all characters are in the PP-OCRv4 table. Glyph pairs
# that no reader can tell apart in this font without context (l/I, O/0 alone) are avoided.
WORDS: tuple[str, ...] = (
    "the", "house", "river", "garden", "window", "yellow", "market", "station", "library", "coffee",
    "morning", "bridge", "forest", "winter", "summer", "music", "planet", "orange", "silver", "doctor",
    "engine", "network", "profile", "optimize", "layer", "kernel", "tensor", "quantize", "latency", "accuracy",
    "Monday", "Friday", "London", "Paris", "Tokyo", "Berlin", "Canada", "Python", "Linux", "Ubuntu",
    "OPEN", "CLOSED", "EXIT", "STOP", "SALE", "HOTEL", "TAXI", "POLICE", "DANGER", "PUSH",
    "2024", "1999", "42", "365", "80486", "3.14", "0.75", "12:30", "100%", "$19.99",
    "25kg", "5km", "A4", "B52", "3D", "4K", "MP3", "USB-C", "COVID-19", "CH4",
    "v2.0", "x86-64", "ID-7731", "Room 204", "Gate B12", "Bus 38", "No.5", "Apt 3B", "Flight 815", "page 7",
    "hello world", "thank you", "good night", "free wifi", "New York", "Main Street", "open daily", "fast food",
    "(555) 0134", "#hashtag", "user@mail", "C++", "e-mail", "24/7", "Q&A", "well-known", "don't", "rock'n'roll",
)

# A separate list for calibration so that calibrating never sees an evaluated word.
CALIBRATION_WORDS: tuple[str, ...] = (
    "apple", "table", "mountain", "street", "Sunday", "Madrid", "PARKING", "EXIT 9", "2023", "7.5",
    "road 66", "camera", "letter", "school", "ticket", "Z80", "14:05", "50%", "blue sky", "INFO",
    "window 3", "paper", "Oslo", "quick fox", "ROUTE 1", "88mm", "delta", "v1.2", "level", "NORTH",
    "sugar", "lamp",
)


def samples(count: int | None = None, variant: str = "mixed") -> Iterator[tuple[dict[str, np.ndarray], str]]:
    """Yield ``({"x": image}, word)``; ``variant`` is ``mixed`` (clean/degraded alternating), ``clean`` or ``degraded``."""
    if variant not in ("mixed", "clean", "degraded"):
        raise ValueError(f"variant must be mixed, clean or degraded, not {variant!r}")
    total = _count() if count is None else count
    for i in range(total):
        if variant == "mixed":
            index, degraded = i // 2, i % 2 == 1
        else:
            index, degraded = i, variant == "degraded"
        word = WORDS[index % len(WORDS)]
        image = render(word, degraded=degraded, seed=(_SEED, index, int(degraded)))
        yield {INPUT_NAME: image}, word


def calibration(count: int = len(CALIBRATION_WORDS)) -> Iterator[dict[str, np.ndarray]]:
    """Yield input dicts for int8 calibration: calibration words, clean and degraded alternating."""
    for i in range(count):
        word = CALIBRATION_WORDS[i % len(CALIBRATION_WORDS)]
        yield {INPUT_NAME: render(word, degraded=i % 2 == 1, seed=(_CALIBRATION_SEED, i))}


def metric(outputs: list[list[np.ndarray]], labels: list) -> float:
    """Exact-match word accuracy: the fraction of samples whose greedy CTC decoding equals the label."""
    if len(outputs) != len(labels):
        raise ValueError(f"{len(outputs)} outputs for {len(labels)} labels")
    if not labels:
        return 0.0
    table = characters()
    hits = sum(decode(out[0], table) == label for out, label in zip(outputs, labels))
    return hits / len(labels)


def decode(logits: np.ndarray, table: Sequence[str] | None = None) -> str:
    """Greedy CTC: argmax per time step, collapse repeats, drop blanks (index 0). Shape (1, T, C) or (T, C)."""
    table = characters() if table is None else table
    scores = np.asarray(logits)
    if scores.ndim == 3:
        scores = scores[0]
    best = scores.argmax(axis=-1)
    keep = np.ones(best.shape, dtype=bool)
    keep[1:] = best[1:] != best[:-1]
    keep &= best != 0
    return "".join(table[k] for k in best[keep])


def characters(model_path: str | None = None) -> list[str]:
    """The model's decoding table: blank, the ``character`` metadata lines, then a space."""
    return list(_characters(model_path or _model_path()))


def render(word: str, *, degraded: bool = False, seed: Sequence[int] | int = 0) -> np.ndarray:
    """Render ``word`` as a (1, 3, 48, W) float32 image in [-1, 1], W a multiple of 8 in [64, 320]."""
    rng = np.random.default_rng(seed)
    if degraded:
        ink = int(rng.integers(0, 70))
        paper = int(rng.integers(185, 256))
    else:
        ink, paper = 0, 255
    image = _draw(word, size=int(rng.integers(30, 40)), ink=ink, paper=paper)
    if degraded:
        image = _degrade(image, rng, paper)
    return _to_tensor(image)


@functools.lru_cache(maxsize=4)
def _characters(path: str) -> tuple[str, ...]:
    import onnx  # only needed to decode, not to render samples

    model = onnx.load(path, load_external_data=False)
    meta = {prop.key: prop.value for prop in model.metadata_props}
    if "character" not in meta:
        raise ValueError(f"{path}: no 'character' metadata; not a PaddleOCR recognizer exported by RapidOCR")
    return ("blank", *meta["character"].splitlines(), " ")


def _model_path() -> str:
    explicit = os.environ.get("LAYERLAB_MODEL")
    if explicit:
        return explicit
    from engine.io.examples import get_example

    example = get_example("ppocr-rec")
    if example.model is None:
        from engine.errors import LayerLabError

        raise LayerLabError("ppocr-rec: model not fetched yet; fetch the example or set LAYERLAB_MODEL")
    return str(example.model)


def _count() -> int:
    raw = os.environ.get("LAYERLAB_PPOCR_SAMPLES")
    if not raw:
        return DEFAULT_COUNT
    try:
        return max(0, int(raw))
    except ValueError:
        raise ValueError(f"LAYERLAB_PPOCR_SAMPLES must be an integer, not {raw!r}") from None


@functools.lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    # Pillow >= 10.1 embeds a scalable font (Aileron) when FreeType is available.
    return ImageFont.load_default(size=size)


def _draw(word: str, *, size: int, ink: int, paper: int) -> Image.Image:
    font = _font(size)
    left, top, right, bottom = font.getbbox(word)
    # Margins like a detector's crop: a little air around the ink, fixed by font size not word.
    pad_x, pad_y = size // 4, size // 5
    ascent, descent = font.getmetrics() if hasattr(font, "getmetrics") else (bottom, 0)
    height = ascent + descent + 2 * pad_y
    width = (right - left) + 2 * pad_x
    image = Image.new("L", (width, height), paper)
    ImageDraw.Draw(image).text((pad_x - left, pad_y), word, font=font, fill=ink)
    return image


def _degrade(image: Image.Image, rng: np.random.Generator, paper: int) -> Image.Image:
    angle = float(rng.uniform(-3.0, 3.0))
    image = image.rotate(angle, resample=Image.Resampling.BILINEAR, expand=True, fillcolor=paper)
    scale = float(rng.uniform(0.4, 0.65))
    small = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    image = image.resize(small, Image.Resampling.BILINEAR).resize(image.size, Image.Resampling.BILINEAR)
    image = image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.4, 1.0))))
    pixels = np.asarray(image, dtype=np.float32) + rng.normal(0.0, float(rng.uniform(3.0, 10.0)), image.size[::-1])
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="L")
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=int(rng.integers(20, 45)))
    buffer.seek(0)
    return Image.open(buffer).convert("L")


def _to_tensor(image: Image.Image) -> np.ndarray:
    resized_w = min(MAX_WIDTH, math.ceil(HEIGHT * image.width / image.height))
    resized = image.resize((resized_w, HEIGHT), Image.Resampling.BILINEAR)
    width = min(MAX_WIDTH, max(MIN_WIDTH, math.ceil(resized_w / 8) * 8))
    plane = np.asarray(resized, dtype=np.float32) / 127.5 - 1.0
    tensor = np.zeros((1, 3, HEIGHT, width), dtype=np.float32)  # 0 is mid-grey, RapidOCR's padding
    tensor[0, :, :, :resized_w] = plane
    return tensor
