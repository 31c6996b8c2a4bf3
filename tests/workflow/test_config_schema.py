"""Schema violations of a workflow config: one line each, naming the file, the key and what was expected
(pgpo/workflow/config_schema.py), not Snakemake's dump of the whole schema and config (issue 25)."""

import os
import subprocess
import sys

import pytest
import yaml

from pgpo.config.schema import REPO, ConfigError
from pgpo.workflow import plan
from pgpo.workflow.config_schema import check_config, config_sources, key_path, source_of, violations

CONFIG = REPO / "workflows/config"
SCHEMA = {
    "type": "object", "required": ["seeds"], "additionalProperties": False,
    "properties": {
        "seeds": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "methods": {"description": "'all' or method names", "oneOf": [{"enum": ["all"]}, {"type": "array"}]},
        "mode": {"enum": ["fast", "slow"]},
        "root": {"type": "string", "description": "results directory"},
        "launch": {"type": "object", "additionalProperties": False,
                   "properties": {"train": {"type": "string"}, "eval": {"type": "string"}}},
        "sizes": {"type": "object", "additionalProperties": {"type": "object", "additionalProperties": False,
                                                             "properties": {"model": {"type": "string"}}}},
    },
}


def test_an_unknown_key_is_named_with_the_closest_known_one():
    assert violations({"seeds": [0], "seedz": [1]}, SCHEMA) == [(("seedz",), "unknown key; did you mean 'seeds'?")]
    nested = {"seeds": [0], "launch": {"trian": "x"}, "sizes": {"3b": {"modle": "m"}}}
    assert violations(nested, SCHEMA) == [(("launch", "trian"), "unknown key; did you mean 'train'?"),
                                          (("sizes", "3b", "modle"), "unknown key; did you mean 'model'?")]
    # nothing close: the known keys instead of a guess
    assert violations({"seeds": [0], "launch": {"zzz": 1}}, SCHEMA) == [
        (("launch", "zzz"), "unknown key; known: eval, train")]


def test_other_violations_say_what_was_expected():
    config = {"methods": "alll", "mode": "fsat", "root": 5, "seeds": [0, -1]}
    assert violations(config, SCHEMA) == [
        (("methods",), "expected 'all' or a list ('all' or method names), got 'alll'"),
        (("mode",), "'fsat' is not one of fast, slow; did you mean 'fast'?"),
        (("root",), "expected a string (results directory), got 5"),
        (("seeds", 1), "-1 is less than the minimum of 0"),
    ]
    assert violations({}, SCHEMA) == [(("seeds",), "missing: required here")]
    long = {"seeds": [0], "root": {f"key{i}": "x" * 500 for i in range(50)}}
    assert len(violations(long, SCHEMA)[0][1]) < 120  # a large wrong value is shown cut short


def test_key_paths_read_as_written():
    assert [key_path(p) for p in [("seeds",), ("sizes", "3b", "model"), ("released", "3b", 0, "name"), ()]] == [
        "seeds", "sizes.3b.model", "released.3b[0].name", "(the whole config)"]


def test_a_key_is_blamed_on_the_source_that_set_it():
    sources = [("--config", {"root": "r"}), ("mine.yaml", {"seedz": [1], "sizes": {"3b": {}}}),
               ("tiny.yaml", {"seeds": [0], "sizes": {"tiny": {}}})]
    assert source_of(("root",), sources) == "--config"
    assert source_of(("seedz",), sources) == "mine.yaml"
    assert source_of(("sizes", "tiny", "model"), sources) == "tiny.yaml"  # missing: where its mapping is
    assert source_of(("seeds", 0), sources) == "tiny.yaml"
    assert source_of(("launch",), sources) == "mine.yaml"  # set nowhere: the first config file, not --config


def test_the_sources_follow_the_merge_order(tmp_path):
    (tmp_path / "base.yaml").write_text("profile: base\nseeds: [0]\n")
    (tmp_path / "mid.yaml").write_text("extends: base.yaml\nprofile: mid\n")
    (tmp_path / "mine.yaml").write_text("extends: mid.yaml\nprofile: mine\nseedz: [1]\n")
    (tmp_path / "other.yaml").write_text("root: r\n")
    names = [name for name, _ in config_sources([tmp_path / "mine.yaml"], {"root": "x"}, tmp_path)]
    assert [os.path.basename(n) if n != "--config" else n for n in names] == [
        "--config", "mine.yaml", "mid.yaml", "base.yaml"]
    # the Snakefile's `configfile:` is listed after the --configfile ones but merged under them
    given = [tmp_path / "mine.yaml"]
    names = [os.path.basename(n) for n, _ in config_sources([*given, tmp_path / "other.yaml"], None, tmp_path, given)]
    assert names == ["mine.yaml", "other.yaml", "mid.yaml", "base.yaml"]


def test_check_config_names_the_file_of_a_shipped_profile_typo(tmp_path):
    mine = tmp_path / "mine.yaml"
    mine.write_text("extends: tiny.yaml\nprofile: mine\nroot: results/mine\naverag_over: [a]\n"
                    "resources: {train: {mem_mbs: 10}}\n")
    config = plan.resolve_extends(yaml.safe_load(mine.read_text()), CONFIG)
    with pytest.raises(ConfigError) as e:
        check_config(config, config_sources([mine], None, CONFIG))
    assert str(e.value).splitlines() == [
        f"{mine}: averag_over: unknown key; did you mean 'average_over'?",
        f"{mine}: resources.train.mem_mbs: unknown key; did you mean 'mem_mb'?"]
    # plan.load_profile (tests, tools) checks the same way; its overrides stand for --config
    fine = tmp_path / "fine.yaml"
    fine.write_text(f"extends: {CONFIG / 'tiny.yaml'}\nprofile: fine\nroot: results/fine\n")
    with pytest.raises(ConfigError) as e:
        plan.load_profile(fine, {"seeds": [-3]})
    assert str(e.value) == "--config: seeds[0]: -3 is less than the minimum of 0"


def test_the_dry_run_prints_one_line_per_violation_and_no_schema(tmp_path):
    mine = tmp_path / "mine.yaml"
    mine.write_text("extends: quick.yaml\nprofile: mine\nroot: results/mine\nseedz: [1]\n"
                    "sizes: {tiny: {revison: abc}}\n")
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--directory", str(REPO), "--configfile",
                           str(mine)], capture_output=True, text=True, timeout=300, cwd=REPO, check=False,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert f"\n{mine}: seedz: unknown key; did you mean 'seeds'?\n" in out, out[-3000:]
    assert f"\n{mine}: sizes.tiny.revison: unknown key; did you mean 'revision'?\n" in out
    assert "Failed validating" not in out and "$schema" not in out and "additionalProperties" not in out
    assert len(out.splitlines()) < 12, out  # Snakemake's own header and two frames around our two lines
    assert "build_tiny" not in out  # before any job was planned
