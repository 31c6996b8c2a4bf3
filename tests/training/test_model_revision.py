"""The paper recipes pin the hub commit of their base model, and training loads exactly that commit."""

import os
import subprocess
import sys

import pytest

from pgpo.config.schema import REPO, ConfigError, load_train_config

PAPER = {"3b": ("Qwen/Qwen2.5-VL-3B-Instruct", "66285546d2b821cf421d4f5eb2576359d3770cd3"),
         "7b": ("Qwen/Qwen2.5-VL-7B-Instruct", "cc594898137f460bfe9f0759e9844b3ce807cfb5")}


@pytest.mark.parametrize("size", sorted(PAPER))
def test_paper_recipes_pin_the_model_commit(size):
    cfg = load_train_config(REPO / f"workflows/config/train/paper_{size}.yaml")
    assert (cfg.model.path, cfg.model.revision) == PAPER[size]


@pytest.mark.parametrize("revision", ["", "main", "66285546"])
def test_the_paper_profile_refuses_a_hub_id_without_a_commit(revision):
    with pytest.raises(ConfigError, match=r"paper_3b.yaml: model.revision must pin the hub commit .* of "
                                          r"Qwen/Qwen2.5-VL-3B-Instruct"):
        load_train_config(REPO / "workflows/config/train/paper_3b.yaml", {"model": {"revision": revision}})


def test_no_commit_is_needed_for_a_local_model_or_on_the_tiny_profile(tmp_path):
    paper = load_train_config(REPO / "workflows/config/train/paper_3b.yaml",
                              {"model": {"path": str(tmp_path), "revision": ""}})
    tiny = load_train_config(REPO / "workflows/config/train/tiny.yaml", {"model": {"path": "org/name"}})
    assert (paper.model.revision, tiny.model.revision) == ("", "")


def test_a_pinned_hub_id_resolves_to_that_commit_in_the_cache(tmp_path):
    """Offline, pinned_snapshot returns the cached snapshot of exactly the pinned commit (so TRL's colocated vLLM,
    which loads model.name_or_path without a revision, reads the same files) and refuses any other commit."""
    repo, commit = PAPER["3b"]
    snapshot = tmp_path / "models--Qwen--Qwen2.5-VL-3B-Instruct" / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    code = ("import sys; from pgpo.models.processor import pinned_snapshot; "
            "print(pinned_snapshot(sys.argv[1], sys.argv[2]))")
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    found = subprocess.run([sys.executable, "-c", code, repo, commit], env=env, capture_output=True, text=True, check=False)
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == str(snapshot)
    other = subprocess.run([sys.executable, "-c", code, repo, PAPER["7b"][1]], env=env, capture_output=True, check=False,
                           text=True)
    assert other.returncode != 0 and "LocalEntryNotFoundError" in other.stderr
    from pgpo.models.processor import pinned_snapshot

    assert pinned_snapshot(str(tmp_path), commit) == str(tmp_path)  # a local directory is used as it is
    assert pinned_snapshot(repo, "") == repo


def test_the_workflow_evaluates_the_base_row_at_the_commit_the_recipe_trains_from():
    import yaml

    profile = yaml.safe_load((REPO / "workflows/config/paper.yaml").read_text())
    for size, entry in profile["sizes"].items():
        recipe = load_train_config(REPO / entry["train_config"])
        assert (entry["model"], entry["revision"]) == (recipe.model.path, recipe.model.revision), size


def test_evaluate_refuses_a_revision_without_a_hub_id(tmp_path, capsys):
    """One line naming the fix, exit 2, no traceback (and nothing written)."""
    from pgpo.cli import main

    (tmp_path / "config.json").write_text("{}")  # a model folder (a bare directory is refused before this check)
    for checkpoint, revision in ((str(tmp_path), "a" * 40), ("Qwen/Qwen2.5-VL-3B-Instruct", "main")):
        assert main(["evaluate", "--checkpoint", checkpoint, "--revision", revision,
                     "--out", str(tmp_path / "e")]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"pgpo evaluate: error: --revision {revision!r}: needs a hub id checkpoint (org/name)"
                              " and a 40-hex commit") and err.count("\n") == 1, err
    assert not (tmp_path / "e").exists()
