"""pass@k and maj@k from the k samples a question already has (issue 25, item 4): extra views beside avg@k, the
paper's metric. Pure Python over per-question sample scores and extracted answers.

- avg@k: the mean score of the k samples (what the tables report).
- pass@j (j <= k): the probability that at least one of j samples drawn without replacement from the k is correct,
  the unbiased estimator of Chen et al. 2021: 1 - C(k - c, j) / C(k, j) with c correct samples; pass@k is 1 when
  any sample is correct.
- maj@k: the score of the most frequent extracted answer among the k samples (a response with no answer does not
  vote; ties go to the answer seen first; no answer at all scores 0).
"""

from __future__ import annotations

from collections import Counter
from math import comb


def pass_at(scores: list[float], j: int) -> float:
    """Unbiased pass@j of one question from its k sample scores (1.0 = correct)."""
    k, c = len(scores), sum(1 for s in scores if s >= 1.0)
    if not 1 <= j <= k:
        raise ValueError(f"pass@{j} needs 1 <= j <= k = {k}")
    return 1.0 - comb(k - c, j) / comb(k, j)


def majority(answers: list[str | None], scores: list[float]) -> float:
    """maj@k of one question: the score of a sample carrying the most frequent answer (answers normalised by the
    caller; None = no answer)."""
    votes = Counter(a for a in answers if a is not None)
    if not votes:
        return 0.0
    top = max(votes.values())
    winner = next(a for a in answers if a is not None and votes[a] == top)  # first seen among the tied
    return scores[answers.index(winner)]
