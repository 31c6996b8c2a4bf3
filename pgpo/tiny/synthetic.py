"""Synthetic visual-reasoning tasks drawn with PIL: seven skills whose answers live only in the image, plus a
control task answerable from the text alone.

Every task asks one fixed question (options included), so the text carries no information about the answer;
``tests/tiny/test_synthetic.py`` checks that a text-only guesser stays at chance. Items are deterministic functions
of (seed, split, index). Shapes are large and high-contrast because the tiny vision tower sees a 112x112 canvas as
8x8 patches of 14 px (16 visual tokens after the 2x2 merge).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw

CANVAS = 112
BACKGROUND = (128, 128, 128)
COLOURS = {"red": (220, 30, 30), "green": (30, 180, 30), "blue": (30, 60, 220), "yellow": (240, 220, 20),
           "black": (0, 0, 0), "white": (255, 255, 255)}


@dataclass(frozen=True)
class Item:
    """One synthetic problem in the project's data schema (image, question, answer, optional choices)."""

    task: str
    question: str
    answer: str
    choices: list[str] | None
    image: Image.Image
    rationale: str  # the short <think> text used by the supervised warm start


def _canvas() -> tuple[Image.Image, ImageDraw.ImageDraw]:
    image = Image.new("RGB", (CANVAS, CANVAS), BACKGROUND)
    return image, ImageDraw.Draw(image)


def _cells(rng: np.random.Generator, k: int, grid: int = 4) -> list[tuple[int, int]]:
    """k distinct cell centres of a grid x grid layout, so shapes never overlap."""
    step = CANVAS // grid
    idx = rng.choice(grid * grid, size=k, replace=False)
    return [(int(i % grid) * step + step // 2, int(i // grid) * step + step // 2) for i in idx]


def count(rng):
    n = int(rng.integers(1, 6))
    image, draw = _canvas()
    for x, y in _cells(rng, n):
        draw.rectangle([x - 9, y - 9, x + 9, y + 9], fill=COLOURS["white"])
    return "How many squares are in the image?", str(n), None, image, "I count the squares."


def colour(rng):
    names = list(COLOURS)
    circle, square = rng.choice(len(names), size=2, replace=False)
    image, draw = _canvas()
    (cx, cy), (sx, sy) = _cells(rng, 2, grid=2)
    draw.ellipse([cx - 22, cy - 22, cx + 22, cy + 22], fill=COLOURS[names[circle]])
    draw.rectangle([sx - 20, sy - 20, sx + 20, sy + 20], fill=COLOURS[names[square]])
    return "What colour is the circle?", names[circle], None, image, "I look at the circle."


def bars(rng):
    low, high = sorted(rng.choice(np.arange(15, 101, 5), size=2, replace=False))
    if high - low < 35:
        high = min(100, low + 35)
        low = high - 35 if high - 35 >= 15 else low
    taller_left = bool(rng.integers(0, 2))
    left, right = (high, low) if taller_left else (low, high)
    image, draw = _canvas()
    draw.rectangle([14, CANVAS - 4 - left, 44, CANVAS - 4], fill=COLOURS["blue"])
    draw.rectangle([68, CANVAS - 4 - right, 98, CANVAS - 4], fill=COLOURS["red"])
    return ("Which bar is taller?", "A" if taller_left else "B", ["left bar", "right bar"], image,
            "I compare the heights.")


# Seven-segment layout: a, b, c, d, e, f, g (top, upper right, lower right, bottom, lower left, upper left, middle).
_SEGMENTS = {0: "abcdef", 1: "bc", 2: "abged", 3: "abgcd", 4: "fgbc", 5: "afgcd", 6: "afgedc", 7: "abc",
             8: "abcdefg", 9: "abfgcd"}


def digit(rng):
    d = int(rng.integers(0, 10))
    image, draw = _canvas()
    x0, y0 = 31 + int(rng.integers(-14, 15)), 11 + int(rng.integers(-5, 6))  # jitter: no two items share pixels
    w, h, t = 50, 90, 10
    boxes = {"a": (x0, y0, x0 + w, y0 + t), "d": (x0, y0 + h - t, x0 + w, y0 + h),
             "g": (x0, y0 + h // 2 - t // 2, x0 + w, y0 + h // 2 + t // 2),
             "f": (x0, y0, x0 + t, y0 + h // 2), "e": (x0, y0 + h // 2, x0 + t, y0 + h),
             "b": (x0 + w - t, y0, x0 + w, y0 + h // 2), "c": (x0 + w - t, y0 + h // 2, x0 + w, y0 + h)}
    for seg in _SEGMENTS[d]:
        draw.rectangle(boxes[seg], fill=COLOURS["black"])
    return "What digit is shown?", str(d), None, image, "I read the digit."


def position(rng):
    quadrant = int(rng.integers(0, 4))
    image, draw = _canvas()
    x = (28 if quadrant % 2 == 0 else 84) + int(rng.integers(-8, 9))
    y = (28 if quadrant < 2 else 84) + int(rng.integers(-8, 9))
    draw.ellipse([x - 14, y - 14, x + 14, y + 14], fill=COLOURS["yellow"])
    choices = ["top left", "top right", "bottom left", "bottom right"]
    return "Where is the dot?", "ABCD"[quadrant], choices, image, "I find the dot."


def shape(rng):
    kind = ["circle", "square", "triangle"][int(rng.integers(0, 3))]
    image, draw = _canvas()
    c, r = CANVAS // 2 + int(rng.integers(-6, 7)), 34
    if kind == "circle":
        draw.ellipse([c - r, c - r, c + r, c + r], fill=COLOURS["green"])
    elif kind == "square":
        draw.rectangle([c - r, c - r, c + r, c + r], fill=COLOURS["green"])
    else:
        draw.polygon([(c, c - r), (c - r, c + r), (c + r, c + r)], fill=COLOURS["green"])
    return "What shape is shown?", kind, None, image, "I look at the shape."


def polygon(rng):
    sides = int(rng.integers(3, 7))
    image, draw = _canvas()
    phase = float(rng.uniform(0, 2 * math.pi))
    pts = [(56 + 44 * math.cos(phase + 2 * math.pi * k / sides), 56 + 44 * math.sin(phase + 2 * math.pi * k / sides))
           for k in range(sides)]
    draw.polygon(pts, fill=COLOURS["white"], outline=COLOURS["black"])
    return "How many sides does the polygon have?", str(sides), None, image, "I count the sides."


def control(rng):
    a, b = int(rng.integers(0, 5)), int(rng.integers(0, 5))
    image, _ = _canvas()  # a blank canvas: the answer is in the text
    return f"What is {a} plus {b}?", str(a + b), None, image, "I add the numbers."


TASKS: dict[str, Callable[[np.random.Generator], tuple]] = {
    "count": count, "colour": colour, "bars": bars, "digit": digit,
    "position": position, "shape": shape, "polygon": polygon, "control": control,
}
VISUAL_TASKS = tuple(t for t in TASKS if t != "control")
SPLIT_IDS = {"train": 0, "warmstart": 1, "eval": 2}


def make_item(task: str, seed: int, split: str, index: int) -> Item:
    """The index-th item of a task in a split; deterministic in (seed, split, task, index)."""
    if task not in TASKS:
        raise KeyError(f"unknown synthetic task {task!r}; known: {sorted(TASKS)}")
    rng = np.random.default_rng([seed, SPLIT_IDS[split], list(TASKS).index(task), index])
    question, answer, choices, image, rationale = TASKS[task](rng)
    return Item(task, question, answer, choices, image, rationale)


def task_corpus() -> list[str]:
    """Every question, option, answer and rationale string the tasks can emit (for training the tokenizer)."""
    texts = []
    for task in TASKS:
        for i in range(40):
            item = make_item(task, 0, "train", i)
            texts += [item.question, item.answer, item.rationale, *(item.choices or [])]
    return texts + list(COLOURS) + [str(i) for i in range(10)]
