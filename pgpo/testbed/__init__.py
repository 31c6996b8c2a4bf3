"""The credit-assignment testbed (issue 21, item 2): digit and count images, responses of `<think>` + L filler words
+ `</think>\\boxed{answer}`, where only the answer token depends on the image. Filler drawn uniformly from
single-token words makes DAPO's gradient on the 48 non-answer tokens pure noise, so a method that puts its credit on
the answer token (PGPO, the oracle) should learn faster than one that does not (DAPO, the placebo).

Modules: filler (the word list), data (the suites), warmstart (format + filler + skills + a text-only mode),
measure (sampling, filler entropy, the blind pass, forced-answer accuracy), gates (go/no-go after the warm start),
records (one JSON per RL run), table (paired differences, figures, MLflow), cli (`pgpo testbed ...`).
"""
