"""The workflow plan (pgpo/workflow/plan.py): profiles, runs, table rows, specs, and validation at the dry run."""

import os
import subprocess
import sys

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from pgpo.workflow import plan
from pgpo.cli import _overrides
from pgpo.config.schema import REPO, ConfigError, available_methods

CONFIG = REPO / "workflows/config"


@pytest.fixture(scope="module")
def quick():
    return plan.load_profile(CONFIG / "quick.yaml")


def test_quick_is_tiny_with_only_its_own_keys_changed(quick):
    tiny = plan.load_profile(CONFIG / "tiny.yaml")
    changed = {k for k in tiny if tiny[k] != quick[k]}
    assert changed == {"profile", "root", "warmstart", "data", "train_set", "eval_set", "dependency_report", "table_note"}
    assert quick["warmstart"] == {"steps": 3, "lr": 2.0e-3, "batch_size": 8, "label_noise": 0.0}  # lr, noise inherited
    assert quick["train_set"]["max_steps"] == 1 and quick["train_set"]["save_steps"] == 1  # merged over tiny's
    assert quick["dependency_report"] == {"size": "tiny", "run": "pgpo-s0", "items_per_task": 1, "k": 2}
    assert quick["seeds"] == tiny["seeds"] and quick["ablation"] == tiny["ablation"]


def test_schema_defaults_are_filled(tmp_path):
    raw = yaml.safe_load((CONFIG / "paper.yaml").read_text())
    for key in ("methods", "train_set", "eval_set", "table7"):
        raw.pop(key)
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(raw))
    cfg = plan.load_profile(path)
    assert (cfg["methods"], cfg["train_set"], cfg["eval_set"], cfg["table7"]) == ("all", {}, {}, [])


def test_table1_rows_are_base_then_every_method_by_seed(quick):
    rows = plan.table_rows(quick, "table1", REPO)
    assert list(rows) == ["base", *available_methods()]  # every baselines/*.yaml, no count pinned
    assert rows["pgpo"] == ["results/quick/eval/tiny/pgpo-s0", "results/quick/eval/tiny/pgpo-s1"]
    runs = plan.trainings(quick, "table1", REPO)
    assert len(runs) == len(available_methods()) * len(quick["seeds"])
    assert runs[0].labels() == {"size": "tiny", "method": runs[0].method, "seed": 0}
    inputs = plan.target_inputs(quick, "table1", REPO)
    assert "results/quick/runs/tiny/pgpo-s1/run.json" in inputs
    assert "results/quick/eval/tiny/base/shard-tiny.json" in inputs


def test_two_sizes_label_rows_by_size():
    cfg = plan.load_profile(CONFIG / "paper.yaml")
    rows = plan.table_rows(cfg, "table1", REPO)
    assert list(rows)[:2] == ["3b base", "7b base"] and "7b pgpo" in rows
    assert plan.checkpoint_dir(cfg, "7b", "base") == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert plan.checkpoint_dir(cfg, "7b", "pgpo-s0") == "results/paper/runs/7b/pgpo-s0/final"
    assert plan.checkpoint_marker(cfg, "7b", "base") == []  # a hub model: nothing to wait for


def test_ablation_rows_come_from_the_grid_with_dotted_method_paths(quick):
    grid = plan.ablation_grid(quick, REPO)
    assert grid["no-normalisation"] == {"shaper.params.tau": "0.4", "shaper.params.beta": "2.0",
                                        "shaper.params.normalize": "false"}
    runs = plan.trainings(quick, "ablation_thresholds", REPO)
    assert [r.variant for r in runs] == list(grid)
    assert runs[0].run_dir == "results/quick/ablation/tiny/pgpo/s0" and runs[0].labels()["variant"] == "pgpo"
    rows = plan.table_rows(quick, "ablation_thresholds", REPO)
    assert rows["boosting-only"] == ["results/quick/eval/tiny/ablation/boosting-only/s0"]
    # the eval directory of an ablation run maps back to its checkpoint
    assert plan.checkpoint_dir(quick, "tiny", "ablation/boosting-only/s0") == \
        "results/quick/ablation/tiny/boosting-only/s0/final"
    assert plan.set_args(grid["no-normalisation"], "--method-set").endswith("shaper.params.normalize=false")


def _with_grid(quick, tmp_path, text, method="pgpo"):
    grid = tmp_path / "grid.tsv"
    grid.write_text(text)
    return {**quick, "ablation": {"method": method, "seeds": [0], "grid": str(grid)}}


def test_any_method_parameter_can_be_ablated(quick, tmp_path):
    cfg = _with_grid(quick, tmp_path, "variant\tloss_terms.perception_kl.gamma\ng1\t0.1\ng2\t0.2\n", method="papo")
    plan.check(cfg, REPO)
    assert [r.variant for r in plan.trainings(cfg, "ablation_thresholds", REPO)] == ["g1", "g2"]


@pytest.mark.parametrize("text, message", [
    ("variant\tshaper.params.tauu\nx\t0.4\n", "variant 'x'"),
    ("variant\tshaper.params.tau\nx\t0.4\nx\t0.5\n", "repeats"),
    ("tau\tbeta\n0.4\t2\n", "`variant` column"),
])
def test_a_bad_grid_is_named_at_the_dry_run(quick, tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        plan.check(_with_grid(quick, tmp_path, text), REPO)


@pytest.mark.parametrize("change, message", [
    ({"methods": ["pgpoo"]}, r"methods: unknown method 'pgpoo'.*did you mean 'pgpo'"),
    ({"table7": ["grpoo"]}, "table7: unknown method 'grpoo'"),
    ({"ablation": {"method": "nope", "seeds": [0], "grid": "workflows/config/ablation_thresholds.tsv"}},
     "ablation.method: unknown method 'nope'"),
    ({"train_set": {"max_stepz": 3}}, r"unknown field\(s\) \['max_stepz'\]"),
    ({"train_set": {"rollout.temperatur": 1.0}}, r"unknown field\(s\) \['temperatur'\]"),
    ({"train_set": {"max_steps": 0, "epochs": 0}}, "max_steps > 0"),
    ({"eval_set": {"sampling.samplez": 2}}, r"eval_set.*unknown field\(s\) \['samplez'\]"),
    ({"dependency_report": {"size": "3b", "run": "pgpo-s0"}}, "dependency_report.size"),
    # a repeat would be run once and averaged twice: n_seeds 2 and an interval made of copies
    ({"seeds": [0, 0]}, r"seeds: 0 listed more than once in \[0, 0\]; list each once"),
    ({"methods": ["grpo", "dapo", "grpo"]}, r"methods: 'grpo' listed more than once"),
    ({"table7": ["pgpo_grpo", "pgpo_grpo"]}, "table7: 'pgpo_grpo' listed more than once"),
    ({"eval_shards": ["tiny", "tiny"]}, "eval_shards: 'tiny' listed more than once"),
    ({"ablation": {"method": "pgpo", "seeds": [1, 1], "grid": "workflows/config/ablation_thresholds.tsv"}},
     "ablation.seeds: 1 listed more than once"),
])
def test_check_rejects_what_a_job_would_reject(quick, change, message):
    with pytest.raises(ConfigError, match=message):
        plan.check({**quick, **change}, REPO)


def test_specs_round_trip_and_name_bad_fields(quick):
    spec = plan.table_spec(quick, "ablation_thresholds", REPO)
    assert plan.TableSpec.from_json(spec.to_json()) == spec
    # rows keep the grid's order through JSON (the table is drawn in it)
    assert list(plan.TableSpec.from_json(spec.to_json()).rows) == list(plan.ablation_grid(quick, REPO))
    assert spec.warmstart == "results/quick/model/warmstart/warmstart.json"
    assert spec.labels["tiny/pgpo/s0"]["variant"] == "pgpo"
    track = plan.track_spec(quick, "table1", REPO)
    assert plan.TrackSpec.from_json(track.to_json()) == track
    assert "eval/tiny/base" in track.evaluations and track.benchmarks[0] == "tiny_count"
    with pytest.raises(ConfigError, match=r"TrackSpec: fields .*'rootz'.*required"):
        plan.TrackSpec.from_json(track.to_json().replace('"root"', '"rootz"'))
    with pytest.raises(ConfigError, match="not JSON"):
        plan.TableSpec.from_json("{")


scalars = st.one_of(st.booleans(), st.integers(-10**6, 10**6), st.floats(-1e6, 1e6, allow_nan=False),
                    st.text("abcxyz_-", min_size=1, max_size=6).filter(lambda s: s not in ("y", "n")))
keys = st.lists(st.text("abcdef", min_size=1, max_size=4), min_size=1, max_size=3).map(".".join)


@given(st.dictionaries(keys, scalars, max_size=4))
def test_nest_reads_overrides_exactly_as_the_command_line_does(flat):
    pairs = [p.split("=", 1)[0].split(" ", 1)[1] + "=" + p.split("=", 1)[1]
             for p in [f"--set {k}={plan.render(v)}" for k, v in flat.items()]]
    try:
        expected = _overrides(pairs)
    except ConfigError:  # 'a' and 'a.b' both set: refused the same way on both paths
        with pytest.raises(ConfigError):
            plan.nest(flat)
        return
    assert plan.nest(flat) == expected


def _snakemake(*args):
    return subprocess.run([sys.executable, "-m", "snakemake", "-n", "--directory", str(REPO), *args],
                          capture_output=True, text=True, timeout=300, cwd=REPO, check=False,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})


@pytest.mark.parametrize("config, message", [
    (["methods=[pgpoo]"], "unknown method 'pgpoo'"),
    (["train_set={max_stepz: 3}"], "unknown field(s) ['max_stepz']"),
])
def test_the_dry_run_fails_on_a_typo(config, message):
    proc = _snakemake("--configfile", str(CONFIG / "quick.yaml"), "--config", *config)
    assert proc.returncode != 0 and message in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-2000:]
    assert "build_tiny" not in proc.stdout  # no job was planned


def test_the_default_target_is_table1():
    proc = _snakemake("--configfile", str(CONFIG / "quick.yaml"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "reproduce_table1" in proc.stdout and "train_ablation" not in proc.stdout
