"""lmms-eval loads `!function utils.<name>` from this file; the logic lives in the pgpo package (one place)."""

from pgpo.evaluation.docs import (  # noqa: F401  (re-exported for the task YAMLs)
    doc_to_messages,
    doc_to_target,
    doc_to_text,
    doc_to_visual,
    process_results,
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
