"""lmms-eval loads `!function utils.<name>` from this file; the logic lives in the pgpo package (one place)."""

from pathlib import Path

from pgpo.evaluation.docs import (  # noqa: F401  (re-exported for the task YAMLs)
    doc_to_messages,
    doc_to_target,
    doc_to_text,
    doc_to_visual,
    process_results,
    tiny_suite_docs,
)
from pgpo.evaluation.sources import (  # noqa: F401
    dynamath_docs,
    geo3k_docs,
    logicvista_docs,
    mathverse_mc_docs,
    mathverse_v_docs,
    mathvision_docs,
    mmk12_docs,
    mmmu_pro_docs,
)

# The tiny tasks' dataset as lmms-eval loads it: this one-line file, by absolute path (`!function` imports any
# attribute, here a string), because lmms-eval resolves a relative data file against the current directory and a
# YAML cannot read an environment variable. Their process_docs replace it with the suite (README.md here).
TINY_SUITE_STUB = str(Path(__file__).with_name("tiny_suite_stub.txt"))

tiny_bars_docs = tiny_suite_docs("bars")
tiny_colour_docs = tiny_suite_docs("colour")
tiny_control_docs = tiny_suite_docs("control")
tiny_count_docs = tiny_suite_docs("count")
tiny_digit_docs = tiny_suite_docs("digit")
tiny_polygon_docs = tiny_suite_docs("polygon")
tiny_position_docs = tiny_suite_docs("position")
tiny_shape_docs = tiny_suite_docs("shape")
