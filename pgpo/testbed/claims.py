"""The paper's claims as a measured table (issue 21, item 4), written by the credit_testbed targets.

Every claim becomes measurements, each a number with a 95% interval, and a verdict at the power the design had:

  supported      the interval lies entirely on the claimed side of the null;
  not supported  the interval lies entirely on the other side of the null, or entirely short of the smallest effect
                 of interest (the design could have seen such an effect, and it is not there);
  inconclusive   otherwise: the interval holds both the null and the effect of interest (too little power).

The smallest effects of interest are the config's (testbed.claims.effects), stated before any run. The claims, in
the paper's words and as measured on the testbed's confirmatory core (arm vs reference, e.g. PGPO vs DAPO):

- variance_reduction, "PGPO reduces the variance of the policy gradient": the noise-scale ratio reference / arm
  (noise scale = tr(cov) / |E g|^2 in prompt groups, pgpo gradient-diagnostic, Adam-preconditioned as the
  optimizer sees it; raw for information) at the warm start and at final checkpoints. Null 1; > 1: the arm needs
  fewer groups per unit of signal.
- collapse_prevention, "PGPO prevents training collapse": is there a collapse to prevent (the reference's filler
  entropy, last block minus first block of the trainer's non-answer entropy curve, per seed), and does the arm keep
  more entropy (final filler entropy arm - reference, paired by seed). Without a significant fall under the
  reference the claim cannot be tested at this horizon: inconclusive, said so.
- sparse_dependency, "visual dependency is sparse: the weight concentrates on the few grounded tokens": the arm's
  share of advantage mass on the answer token (mean over training steps, per seed) against the share a uniform
  weighting gives (the reference's, paired by seed), and its level against effects.answer_share.
- learning, "PGPO learns the visual skill better": held-out forced-answer accuracy (paired by question, seeds as
  blocks) and the area under the training-accuracy curve, arm - reference.

Pure functions of the records (pgpo.testbed.records) and the diagnostics' JSON; nothing here knows a method."""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np

from pgpo.util.atomic import write_atomic
from pgpo.util.jsonfile import read_json

VERDICTS = ("supported", "not supported", "inconclusive")
REQUIRED = ("arm", "reference", "records", "diagnostics", "diagnostic_arms", "diagnostic_reference", "effects",
            "curves", "block", "bootstrap", "out")


def verdict(ci: list[float] | None, *, null: float, effect: float, p: float | None = None,
            alpha: float = 0.05) -> tuple[str, str]:
    """(verdict, why) for a claim "the true value lies beyond `null`, towards `effect`".

    ci: the 95% interval [low, high] (None: no interval, e.g. one seed). effect: the smallest effect of interest,
    on the claimed side of the null (effect > null: the claim is "larger"; effect < null: "smaller"). A threshold
    claim ("the share is above one half") has no margin: pass effect = null +/- a tiny step for its side.
    p: the exact test's p-value where there is one (sign flips over seeds): an interval beyond the null supports
    the claim only if p < alpha too (2 seeds can never reach 5%, whatever the bootstrap interval says)."""
    if effect == null:
        raise ValueError(f"verdict: the effect of interest ({effect}) must differ from the null ({null})")
    if ci is None:
        return "inconclusive", "no interval (one seed)"
    sign = 1.0 if effect > null else -1.0
    lo, hi = sorted(sign * float(x) for x in ci)
    n, e = sign * null, sign * effect
    if p is not None and p >= alpha and (lo > n or hi < n):
        if hi < e and lo <= n:  # beyond the null on the wrong side: the effect of interest is excluded anyway
            return "not supported", f"interval excludes the effect of interest {effect:g}"
        return "inconclusive", f"interval beyond the null {null:g}, but the exact test's p = {p:.3g} >= {alpha:g}"
    if lo > n:
        return "supported", f"interval beyond the null {null:g}"
    if hi < n:
        return "not supported", f"interval on the opposite side of the null {null:g}"
    if hi < e:
        return "not supported", f"interval excludes the effect of interest {effect:g}"
    return "inconclusive", f"interval holds both the null {null:g} and the effect of interest {effect:g}"


def _row(claim, measurement, value, ci, null, effect, *, decisive=True, n=None, p=None, mde80=None, note="",
         no_interval=""):
    if value is None:  # e.g. a noise-scale ratio whose signal estimate is not positive: infinite noise scale
        v, why, ci = "inconclusive", "not estimable at this sample size (" + (note or "no value") + ")", None
    elif ci is None and no_interval:
        v, why = "inconclusive", no_interval
    else:
        v, why = verdict(ci, null=null, effect=effect, p=p)
    return {"claim": claim, "measurement": measurement, "value": None if value is None else float(value),
            "ci95_low": None if ci is None else float(ci[0]), "ci95_high": None if ci is None else float(ci[1]),
            "null": null, "effect": effect, "n": n, "p_value": p, "mde80": mde80, "verdict": v, "why": why,
            "decisive": decisive, "note": note}


def _seed_row(claim, measurement, res, null, effect, **kw):
    """A row from pgpo.stats.paired.paired_seed_difference's result (value and interval of the mean difference)."""
    return _row(claim, measurement, res["mean"], res["ci95"], null, effect, n=res["n_seeds"], p=res["p_value"],
                mde80=res["mde80"], **kw)


def variance_rows(spec: dict) -> list[dict]:
    """One row per diagnosed checkpoint and preconditioning: the noise-scale ratio reference / arm."""
    names = {}
    rows = []
    for at, path in spec["diagnostics"].items():
        d = read_json(path, "the testbed's diagnostic rule", what="gradient diagnostic")
        labels = list(spec["diagnostic_arms"])
        if spec["diagnostic_reference"] not in labels:
            labels.append(spec["diagnostic_reference"])
        if len(labels) != len(d["methods"]):
            raise ValueError(f"{path}: methods {d['methods']} do not match the diagnostic arms {labels}")
        names = dict(zip(labels, d["methods"]))
        for arm in (spec["arm"], spec["reference"]):
            if arm not in names:
                raise ValueError(f"{path}: arm {arm!r} was not diagnosed (diagnostic arms {labels})")
        for kind, label in (("adam", "Adam-preconditioned"), ("raw", "raw")):
            cell = d[kind]["noise_scale_ratio"][names[spec["reference"]]][names[spec["arm"]]]
            rows.append(_row("variance_reduction", f"noise-scale ratio {spec['reference']}/{spec['arm']}, {label}, "
                             f"at {at} ({d['groups']} groups)", cell["value"], cell["ci95"], 1.0,
                             spec["effects"]["noise_scale_ratio"], n=d["groups"], decisive=kind == "adam",
                             note="" if cell["value"] is not None else "a mean-gradient signal estimate <= 0: "
                             "infinite noise scale; more groups",
                             no_interval="no interval: most bootstrap draws of the groups have a signal estimate "
                             "<= 0 (more groups)"))
    return rows


def _by_seed(records: dict, arm: str, fn) -> dict[int, float]:
    return {s: float(fn(r)) for s, r in records[arm].items()}


def _curve_change(curve: dict, block: int) -> float:
    from pgpo.stats.paired import block_means

    _, means = block_means(curve["steps"], curve["values"], block)
    return float(means[-1] - means[0])


def collapse_rows(spec: dict, records: dict) -> list[dict]:
    from pgpo.stats.paired import paired_seed_difference

    arm, ref, eff, boot = spec["arm"], spec["reference"], spec["effects"], spec["bootstrap"]
    curve = spec["curves"]["entropy"]
    rows = []
    for who, decisive in ((ref, True), (arm, False)):
        change = _by_seed(records, who, lambda r: _curve_change(r["curves"][curve], spec["block"]))
        res = paired_seed_difference(change, {s: 0.0 for s in change}, bootstrap=boot, seed=0)
        rows.append(_seed_row("collapse_prevention", f"{who}: filler entropy change over training (last - first "
                              f"block of {spec['block']} steps, nats)", res, 0.0, -eff["entropy_fall"],
                              decisive=decisive, note="a collapse to prevent" if who == ref else "for information"))
    res = paired_seed_difference(_by_seed(records, arm, lambda r: r["filler_entropy"]),
                                 _by_seed(records, ref, lambda r: r["filler_entropy"]), bootstrap=boot, seed=0)
    rows.append(_seed_row("collapse_prevention", f"final filler entropy {arm} - {ref} (nats, held-out)", res, 0.0,
                          eff["filler_entropy"]))
    return rows


def sparsity_rows(spec: dict, records: dict) -> list[dict]:
    from pgpo.stats.paired import curve_auc, paired_seed_difference

    arm, ref, eff, boot = spec["arm"], spec["reference"], spec["effects"], spec["bootstrap"]
    curve = spec["curves"]["answer_share"]
    share = {who: _by_seed(records, who, lambda r: curve_auc(r["curves"][curve]["steps"],
                                                               r["curves"][curve]["values"])) for who in (arm, ref)}
    level = eff["answer_share"]
    # the level itself: its seeds' mean and interval (a difference to 0), judged against the threshold `level`
    res = paired_seed_difference(share[arm], {s: 0.0 for s in share[arm]}, bootstrap=boot, seed=0)
    rows = [_seed_row("sparse_dependency", f"{arm}: share of advantage mass on the answer token (mean over "
                      "training)", {**res, "p_value": None}, level, level + 1e-9)]
    res = paired_seed_difference(share[arm], share[ref], bootstrap=boot, seed=0)
    rows.append(_seed_row("sparse_dependency", f"answer share {arm} - {ref} (the uniform weighting's share)", res,
                          0.0, eff["answer_share_gain"]))
    return rows


def learning_rows(spec: dict, records: dict) -> list[dict]:
    from pgpo.testbed.table import compare

    variant = next(iter(next(iter(records.values())).values()))["variant"]
    table = compare(variant, {k: records[k] for k in (spec["arm"], spec["reference"])}, spec["reference"],
                    spec["bootstrap"])
    rows = []
    for metric, effect in (("forced_answer", "forced_answer"), ("auc", "auc")):
        t = next(r for r in table if r["metric"] == metric)
        rows.append(_row("learning", f"{t['label']} {spec['arm']} - {spec['reference']}", t["diff"],
                         [t["ci95_low"], t["ci95_high"]], 0.0, spec["effects"][effect], n=t["n_seeds"],
                         p=t["p_value"], mde80=t["mde80"]))
    return rows


def overall(claim: str, rows: list[dict]) -> tuple[str, str]:
    """A claim's verdict from its decisive rows: supported if all are, not supported if any is not, else
    inconclusive. collapse_prevention needs a collapse first: no significant fall under the reference means
    the claim was not testable here."""
    decisive = [r for r in rows if r["decisive"]]
    if claim == "collapse_prevention" and decisive[0]["verdict"] != "supported":
        return "inconclusive", "no significant entropy fall under the reference: no collapse to prevent here"
    if all(r["verdict"] == "supported" for r in decisive):
        return "supported", "every decisive measurement supports it"
    if any(r["verdict"] == "not supported" for r in decisive):
        return "not supported", "a decisive measurement does not support it"
    return "inconclusive", "a decisive measurement is inconclusive"


def measure_claims(spec: dict) -> dict:
    """{"rows": [...], "claims": {claim: {verdict, why}}} for the spec (see REQUIRED)."""
    from pgpo.testbed.table import load_records

    missing = [k for k in REQUIRED if k not in spec]
    if missing:
        raise ValueError(f"pgpo testbed claims: --spec lacks {missing}")
    by_variant = load_records(spec["records"])
    if len(by_variant) != 1:
        raise ValueError(f"pgpo testbed claims: records of one variant expected, got {sorted(by_variant)}")
    records = next(iter(by_variant.values()))
    for arm in (spec["arm"], spec["reference"]):
        if arm not in records:
            raise ValueError(f"pgpo testbed claims: no record of arm {arm!r} (have {sorted(records)})")
    rows = (variance_rows(spec) + collapse_rows(spec, records) + sparsity_rows(spec, records)
            + learning_rows(spec, records))
    claims = {}
    for claim in dict.fromkeys(r["claim"] for r in rows):
        v, why = overall(claim, [r for r in rows if r["claim"] == claim])
        claims[claim] = {"verdict": v, "why": why}
    return {"rows": rows, "claims": claims, "arm": spec["arm"], "reference": spec["reference"],
            "seeds": sorted(records[spec["arm"]]), "effects": spec["effects"]}


def _num(x, fmt=".4g") -> str:
    return "" if x is None or (isinstance(x, float) and not np.isfinite(x)) else format(x, fmt)


def markdown(result: dict, profile: str) -> str:
    out = [f"# The paper's claims, measured ({profile} profile: {result['arm']} vs {result['reference']}, seeds "
           f"{result['seeds']})", "",
           "Verdicts at the power achieved: supported = the 95% interval lies beyond the null on the claimed side; "
           "not supported = it lies on the other side, or excludes the smallest effect of interest (stated in the "
           "config before the run); inconclusive = it holds both. Rows marked * decide the claim.", "",
           "| claim | verdict | why |", "|---|---|---|"]
    out += [f"| {c} | **{v['verdict']}** | {v['why']} |" for c, v in result["claims"].items()]
    out += ["", "| claim | measurement | value [95% CI] | null | effect of interest | n | p | mde80 | verdict | why |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        ci = f" [{_num(r['ci95_low'])}, {_num(r['ci95_high'])}]" if r["ci95_low"] is not None else ""
        out.append(f"| {r['claim']} | {r['measurement']}{' *' if r['decisive'] else ''} | {_num(r['value'])}{ci} | "
                   f"{r['null']:g} | {r['effect']:g} | {r['n'] or ''} | {_num(r['p_value'], '.3g')} | "
                   f"{_num(r['mde80'], '.3g')} | {r['verdict']} | {r['why']} |")
    return "\n".join(out + [""])


def write_html(result: dict, path: Path, title: str) -> None:
    head = ["claim", "measurement", "value", "ci95_low", "ci95_high", "null", "effect", "n", "p_value", "mde80",
            "verdict"]
    verdicts = "".join(f"<li><b>{html.escape(c)}</b>: {html.escape(v['verdict'])} ({html.escape(v['why'])})</li>"
                       for c, v in result["claims"].items())
    cells = "".join("<tr>" + "".join(f"<td>{html.escape(_num(r[k]) if isinstance(r[k], float) else str(r[k] or ''))}"
                                     "</td>" for k in head) + "</tr>" for r in result["rows"])
    write_atomic(path, f"<html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head><body>"
                       f"<h2>{html.escape(title)}</h2><ul>{verdicts}</ul><table border=1 cellpadding=3><tr>"
                       + "".join(f"<th>{h}</th>" for h in head) + f"</tr>{cells}</table></body></html>")


def write_claims(spec: dict) -> list[Path]:
    """<out>.md, .json and .html of the spec's records and diagnostics; mirrored into MLflow (experiment
    spec["experiment"], run `claims`) when the spec names one."""
    result = measure_claims(spec)
    out = Path(spec["out"])
    out.parent.mkdir(parents=True, exist_ok=True)
    md, js, page = Path(f"{out}.md"), Path(f"{out}.json"), Path(f"{out}.html")
    write_atomic(md, markdown(result, spec.get("profile", "")))
    write_atomic(js, json.dumps({**result, "spec": spec}, indent=2))
    write_html(result, page, f"The paper's claims, measured ({spec.get('profile', '')} profile)")
    if spec.get("experiment"):
        from pgpo.testbed.tracking import mirror_claims

        mirror_claims(spec, result, [md, js, page])
    return [md, js, page]
