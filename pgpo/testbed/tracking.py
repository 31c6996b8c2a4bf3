"""A credit testbed table in MLflow: experiment `<profile>/<table>` (credit_testbed or credit_testbed_core), a
parent run holding the paired table and the curves figure, one child run per RL run (the training run's params
and curves, plus the record's summary metrics and labels arm / seed / variant). Keys are the records' (variant,
arm, seed), so re-running the table step replaces changed runs and never duplicates (pgpo.tracking.ingest.upsert)."""

from __future__ import annotations

from pathlib import Path

from pgpo.util.provenance import config_hash

SUMMARY = ("auc", "forced_mean", "filler_entropy", "filler_word_entropy", "format")


def _store_lock(root):
    """The lock every writer of the results root's MLflow store holds (pgpo.tracking.ingest.writer_lock)."""
    from pgpo.tracking.ingest import writer_lock

    return writer_lock(root)


def mirror(spec: dict, records: dict, rows: list[dict], files: list[Path]) -> dict:
    with _store_lock(spec["root"]):
        return _mirror(spec, records, rows, files)


def _mirror(spec, records, rows, files) -> dict:
    from pgpo.tracking.store import client_for, experiment
    from pgpo.util.provenance import code_version
    from pgpo.tracking.ingest import log_table, tracking_uri, upsert
    from pgpo.tracking.records import Record, system_tags, train_record

    uri, artifacts = tracking_uri(spec["root"])
    client = client_for(uri)
    table = Path(spec["out"]).name
    exp_id = experiment(client, f"{Path(spec['root']).name}/{table}", artifacts)
    parent = upsert(client, exp_id, f"{table}/parent", "parent", table, None, Record({}, [], {}, []),
                    {"target": table, "reference": spec["reference"]},
                    system_tags("pgpo testbed table", code_version(), None))
    ids = {}
    for variant, arms in records.items():
        for arm, seeds in arms.items():
            for seed, rec in seeds.items():
                run = train_record(Path(rec["run"]))
                run.metrics += [(k, float(rec[k]), 0, run.end_ms) for k in SUMMARY if rec.get(k) is not None]
                if rec["steps_to_gain"] is not None:
                    run.metrics.append(("steps_to_gain", float(rec["steps_to_gain"]), 0, run.end_ms))
                params = {**run.params, "arm": arm, "variant": variant, "seed": seed}
                key = f"{table}/{variant}/{arm}-s{seed}"
                ids[key] = upsert(client, exp_id, key, config_hash([rec, [str(f) for f in run.files]]),
                                  f"{variant} {arm} s{seed}", parent, run, params, {**run.tags, "kind": "testbed"})
    log_table(spec["root"], parent, files, rows)
    return {"experiment_id": exp_id, "parent_run_id": parent, "runs": ids}


def mirror_claims(spec: dict, result: dict, files: list[Path]) -> str:
    """The claims table as one MLflow run `claims` of experiment spec["experiment"]: a tag per claim's verdict,
    each measurement's value as a metric, the effects of interest as params, the rows and files as artifacts."""
    with _store_lock(spec["root"]):
        from pgpo.tracking.store import client_for, experiment
        from pgpo.util.provenance import code_version
        from pgpo.tracking.ingest import log_table, tracking_uri, upsert
        from pgpo.tracking.records import Record, system_tags

        uri, artifacts = tracking_uri(spec["root"])
        client = client_for(uri)
        exp_id = experiment(client, spec["experiment"], artifacts)
        metrics = [(f"{r['claim']}/{i}", r["value"], 0, None) for i, r in enumerate(result["rows"])
                   if r["value"] is not None]
        tags = {**system_tags("pgpo testbed claims", code_version(), None),
                **{f"claim.{c}": v["verdict"] for c, v in result["claims"].items()}}
        params = {**{f"effect.{k}": v for k, v in result["effects"].items()}, "arm": result["arm"],
                  "reference": result["reference"], "seeds": result["seeds"]}
        run = upsert(client, exp_id, "claims", config_hash([result, spec]), "claims", None,
                     Record(params, metrics, {}, [str(f) for f in files]), params, tags)
        log_table(spec["root"], run, files, result["rows"])
        return run
