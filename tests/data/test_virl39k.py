"""ViRL39K preparation (`pgpo prepare virl39k`) and multi-image problems end to end: conversion values, the report
of unconvertible rows, source revision, the workflow step, prompts, both blind views, a real 2-step training and
the evaluation prompt of a 2-image row.

The fixture (tests/fixtures/virl39k/) is the release layout: 39Krelease.jsonl (13 rows: 4 good, one of them with
two images and a nested-brace answer, one sharing another row's image; 9 bad) and images/ (small PNGs, one file
that is not an image)."""

import json
import shutil
from types import SimpleNamespace

import pytest
import torch

from pgpo.cli import main
from pgpo.config.schema import REPO, ConfigError, load_method, load_train_config
from pgpo.data.datasets import DataError, load_split, sha256_file, verify_manifest, write_manifest
from pgpo.data.virl39k import Rejected, prepare_virl39k, unbox

FIXTURE = REPO / "tests/fixtures/virl39k"
REJECTED = {  # qid (None: the row has none) -> reason, with the row number in the table
    5: ("bad-missing-file", "missing_image_file"), 6: ("bad-no-box", "no_boxed_answer"),
    7: ("bad-unreadable", "unreadable_image"), 8: ("bad-tag-count", "image_tag_count"),
    9: ("virl-mc", "duplicate_qid"), 10: ("bad-outside", "image_outside_source"), 11: (None, "bad_row"),
    12: ("bad-two-boxes", "several_boxed_answers"), 13: (None, "no_qid")}


def _prepare(out, src=FIXTURE, **kw):
    return prepare_virl39k(src, out, max_rejected_fraction=1.0, progress=lambda _: None, **kw)


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    """The fixture converted once: (output folder, report)."""
    out = tmp_path_factory.mktemp("virl39k")
    return out, _prepare(out)


def _rows(out):
    return {r["id"]: r for r in map(json.loads, (out / "train.jsonl").read_text().splitlines())}


# -- conversion ---------------------------------------------------------------------------------------------------
def test_rows_convert_to_the_split_schema_with_every_image(split):
    out, _ = split
    rows = _rows(out)
    assert list(rows) == ["virl-mc", "virl-pair", "virl-count", "virl-shared"]  # source order
    mc, pair, count, shared = rows.values()
    # tags stripped, options left inline in the question (choices empty), letter unboxed
    assert (mc["question"], mc["answer"], mc["choices"]) == (
        "Which shape is drawn?\nChoices:\n(A) circle\n(B) square", "B", [])
    assert (mc["task"], mc["source"], mc["pass_rates"]) == (
        "Spatial Reasoning", "fixture", {"PassRate_32BTrained": 0.75, "PassRate_7BBase": 0.5})
    assert pair["question"].startswith("The first image shows") and "<image>" not in pair["question"]
    assert pair["answer"] == "\\frac{1}{2}"  # nested braces matched
    assert (count["answer"], shared["answer"]) == ("1", "\\text{blue}")
    # both images, in order, copied byte for byte under images/
    assert pair["images"] == ["images/Processed-pair-0.png", "images/Processed-pair-1.png"]
    assert pair["source_images"] == ["images/Processed-pair-0.png", "images/Processed-pair-1.png"]
    assert pair["images_sha256"] == [sha256_file(FIXTURE / p) for p in pair["source_images"]]
    assert (out / pair["images"][1]).read_bytes() == (FIXTURE / "images/Processed-pair-1.png").read_bytes()
    assert shared["images"] == mc["images"]  # a shared source image is one output file
    assert sorted(p.name for p in (out / "images").iterdir()) == [
        "Processed-count-0.png", "Processed-mc-0.png", "Processed-pair-0.png", "Processed-pair-1.png"]
    records = {r.id: r for r in load_split(out / "train.jsonl")}
    assert [len(r.images) for r in records.values()] == [1, 2, 1, 1]
    assert records["virl-mc"].image == str((out / mc["images"][0]).resolve())
    with pytest.raises(ValueError, match="has 2 images"):
        _ = records["virl-pair"].image  # single-image code can never silently take the first


def test_every_unconvertible_row_is_reported_by_qid_with_its_reason(split):
    out, report = split
    assert report["counts"] == {"rows": 13, "converted": 4, "rejected": 9, "multi_image": 1, "images": 4}
    assert {r["row"]: (r["qid"], r["reason"]) for r in report["rejected"]} == REJECTED
    assert report["rejected_by_reason"]["no_boxed_answer"] == 1 and sum(report["rejected_by_reason"].values()) == 9
    assert json.loads((out / "prepare_report.json").read_text()) == report
    detail = {r["qid"]: r["detail"] for r in report["rejected"]}
    assert "2 <image> tag(s) in the question for 1 image(s)" in detail["bad-tag-count"]
    assert "Processed-nope-0.png" in detail["bad-missing-file"]


def test_manifest_records_the_source_and_verifies(split):
    out, report = split
    verify_manifest(out)
    manifest = json.loads((out / "MANIFEST.json").read_text())["config"]
    assert manifest["source"]["table_sha256"] == sha256_file(FIXTURE / "39Krelease.jsonl")
    assert manifest["source"]["dataset"] == "TIGER-Lab/ViRL39K" and manifest["counts"] == report["counts"]
    assert manifest["source"]["revision"] is None and manifest["source"]["revision_from"] == "unknown"


def test_cli_prints_the_counts_and_fails_above_the_rejection_limit(tmp_path, capsys):
    argv = ["prepare", "virl39k", "--src", str(FIXTURE), "--out", str(tmp_path / "a")]
    assert main(argv) == 2  # 9 of 13 rejected > the default 5 %
    captured = capsys.readouterr()
    assert "9 of 13 rows rejected" in captured.err and "prepare_report.json" in captured.err
    assert "4 converted (1 with several images" in captured.out and "rejected image_tag_count: 1" in captured.out
    assert (tmp_path / "a/prepare_report.json").exists()  # the report is there to read
    assert main([*argv, "--max-rejected-fraction", "0.75"]) == 0


@pytest.mark.parametrize("answer, value", [
    ("\\boxed{B}", "B"), ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"), ("The answer is \\boxed{ 3 }.", "3"),
    ("\\boxed{\\sqrt{\\boxed{2}}}", "\\sqrt{\\boxed{2}}"), ("\\boxed {x^{2}}", "x^{2}"),
])
def test_unbox(answer, value):
    assert unbox(answer) == value


@pytest.mark.parametrize("answer, reason", [
    ("B", "no_boxed_answer"), ("\\boxed{\\frac{1}{2}", "no_boxed_answer"), ("\\boxed{1}, \\boxed{2}",
                                                                            "several_boxed_answers"),
    ("\\boxed{ }", "empty_boxed_answer"),
])
def test_unbox_refuses(answer, reason):
    with pytest.raises(Rejected) as e:
        unbox(answer)
    assert e.value.reason == reason


def test_parquet_and_json_tables_convert_like_jsonl(split, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    rows = []
    for line in (FIXTURE / "39Krelease.jsonl").read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # not representable in parquet
    for fmt in ("parquet", "json"):
        src = tmp_path / fmt
        shutil.copytree(FIXTURE / "images", src / "images")
        if fmt == "parquet":
            pq.write_table(pa.Table.from_pylist(rows), src / "39Krelease.parquet")
        else:
            (src / "39Krelease.json").write_text(json.dumps(rows))
        report = _prepare(tmp_path / f"out-{fmt}", src)
        assert _rows(tmp_path / f"out-{fmt}") == _rows(split[0])
        assert report["counts"]["rejected"] == 8 and report["counts"]["converted"] == 4


def test_source_revision_is_read_from_the_download_and_checked(tmp_path):
    src = tmp_path / "raw"
    shutil.copytree(FIXTURE, src)
    commit = "0123456789abcdef0123456789abcdef01234567"
    meta = src / ".cache/huggingface/download/39Krelease.jsonl.metadata"
    meta.parent.mkdir(parents=True)
    meta.write_text(f"{commit}\netag\n1700000000.0\n")  # what `hf download --local-dir` writes
    report = _prepare(tmp_path / "a", src)
    assert report["source"]["revision"] == commit and "hf download metadata" in report["source"]["revision_from"]
    assert _prepare(tmp_path / "b", src, revision=commit)["source"]["revision"] == commit
    with pytest.raises(DataError, match=f"downloaded at revision {commit}.*revision f{'0' * 39} is pinned"):
        _prepare(tmp_path / "c", src, revision="f" + "0" * 39)
    repo = tmp_path / "hub/datasets--TIGER-Lab--ViRL39K"  # the HF cache layout: snapshot files link to blobs
    snapshot = repo / "snapshots" / commit
    shutil.copytree(FIXTURE, snapshot)
    (repo / "blobs").mkdir()
    (snapshot / "39Krelease.jsonl").rename(repo / "blobs/5e1f")
    (snapshot / "39Krelease.jsonl").symlink_to("../../blobs/5e1f")
    report = _prepare(tmp_path / "d", snapshot)
    assert (report["source"]["revision"], report["source"]["revision_from"]) == (commit, "hf cache snapshot")
    assert report["counts"]["converted"] == 4


def test_a_source_that_converts_nothing_is_an_error(tmp_path):
    with pytest.raises(DataError, match="no row could be converted.*images.zip unzipped"):
        _prepare(tmp_path / "out", images_root=tmp_path)  # every image missing: images.zip not unzipped
    assert json.loads((tmp_path / "out/prepare_report.json").read_text())["rejected_by_reason"][
        "missing_image_file"] == 7  # the rows not rejected earlier
    with pytest.raises(DataError, match="no such ViRL39K folder"):
        _prepare(tmp_path / "out2", tmp_path / "missing")
    with pytest.raises(DataError, match="is the source folder"):
        _prepare(FIXTURE, FIXTURE)


def test_split_loader_names_the_bad_image_of_a_multi_image_row(split, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(split[0], root)
    lines = (root / "train.jsonl").read_text().splitlines()
    pair = json.loads(lines[1])
    (root / pair["images"][1]).write_bytes(b"replaced")
    with pytest.raises(DataError, match=r"train.jsonl:2: field 'images'\[1\] \(images/Processed-pair-1.png\): "
                                        "sha256 differs"):
        load_split(root / "train.jsonl")
    lines[1] = json.dumps({**pair, "image": pair["images"][0]})
    (root / "train.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="train.jsonl:2: fields 'image' and 'images' are both set"):
        load_split(root / "train.jsonl")


# -- the workflow step ------------------------------------------------------------------------------------------
def _validated(config):
    from snakemake.utils import validate

    validate(config, str(REPO / "workflows/schemas/config.schema.yaml"))  # fills the schema's defaults
    return config


def test_the_paper_profile_plans_the_preparation_before_training():
    import yaml

    from pgpo.workflow.prepare import plan

    paper = _validated(yaml.safe_load((REPO / "workflows/config/paper.yaml").read_text()))
    p = plan(paper)
    assert p.outputs == ["data/virl39k/train.jsonl", "data/virl39k/MANIFEST.json", "data/virl39k/prepare_report.json"]
    assert p.args == "virl39k --src data/virl39k_raw --out data/virl39k --max-rejected-fraction 0.05"
    assert p.train_set == {"data.train": "data/virl39k/train.jsonl"}
    # the paper recipes read the prepared split
    for size in paper["sizes"].values():
        assert load_train_config(REPO / size["train_config"]).data.train == p.train_set["data.train"]
    # defaults from the schema, a pinned revision is passed on
    minimal = _validated({**paper, "prepare_data": {"dataset": "virl39k", "revision": "abc"}})
    assert plan(minimal).args.startswith("virl39k --src data/virl39k_raw --out data/virl39k")
    assert plan(minimal).args.endswith("--revision abc")
    tiny = _validated(yaml.safe_load((REPO / "workflows/config/tiny.yaml").read_text()))
    assert plan(tiny) is None  # the tiny profile generates its data
    with pytest.raises(ConfigError, match="build_tiny"):
        plan({**tiny, "prepare_data": minimal["prepare_data"]})
    from snakemake.exceptions import WorkflowError

    with pytest.raises(WorkflowError):
        _validated({**paper, "prepare_data": {"dataset": "laion"}})


# -- prompts, blind views, training, evaluation on the converted split (tiny model) -----------------------------
def _tokens_per_row(grid, num_images):
    """Visual tokens of each row: per image t*h*w patches / 4 (2x2 merge), summed over the row's images."""
    per_image = (grid.prod(-1) // 4).tolist()
    starts = [sum(num_images[:i]) for i in range(len(num_images))]
    return [sum(per_image[s:s + n]) for s, n in zip(starts, num_images)]


def test_the_rollout_prompt_has_one_image_block_per_image_as_trl_renders_it(split, tiny):
    from trl.data_utils import prepare_multimodal_messages

    from pgpo.data.prompts import conversation
    from pgpo.tiny.sampling import load_images, prompt_texts

    _, processor = tiny
    records = load_split(split[0] / "train.jsonl")
    pair = records[1]
    trl_prompt = processor.apply_chat_template(
        prepare_multimodal_messages(conversation(pair.question, pair.choices), images=load_images([pair])),
        add_generation_prompt=True, tokenize=False)
    ours = prompt_texts(processor, [pair])[0]
    assert ours == trl_prompt and ours.count("<|vision_start|>") == 2 and "<image>" not in ours
    enc = processor(images=load_images(records[:2]), text=prompt_texts(processor, records[:2]), padding=True,
                    return_tensors="pt")
    image_token = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert enc["image_grid_thw"].shape[0] == 3  # 1 + 2 images
    assert (enc["input_ids"] == image_token).sum(-1).tolist() == _tokens_per_row(enc["image_grid_thw"], [1, 2])


def _recipe(tiny_dir, out, **over):
    raw = {"model": {"path": str(tiny_dir)}, "data": {"train": str(out / "train.jsonl")},
           "rollout": {"prompts_per_step": 2, "update_prompts": 2, "num_generations": 2, "max_completion_length": 6},
           "micro_batch": 2, "max_steps": 2, "save_steps": 2, "threads": 2}
    return load_train_config(REPO / "workflows/config/train/tiny.yaml", {**raw, **over})


@pytest.mark.slow
def test_both_blind_views_handle_a_two_image_row_in_a_mixed_batch(split, tiny_dir, tmp_path):
    """A rollout of the 2-image row next to a 1-image row: the attention-mask view slices grids per row (same
    log-probs in micro-batches of 1 and of 4), patch blackening re-processes 3 images with unchanged grids."""
    from trl import GRPOTrainer

    from pgpo.methods.blind import BLIND_VIEWS, BlindInputs, PatchBlackeningParams
    from pgpo.training.blind_forward import blind_forward
    from pgpo.training.run import build_trainer

    trainer = build_trainer(_recipe(tiny_dir, split[0]), load_method("pgpo"), tmp_path / "t")
    by_id = {trainer.train_dataset[i]["id"]: trainer.train_dataset[i] for i in range(len(trainer.train_dataset))}
    rows = [by_id["virl-mc"]] * 2 + [by_id["virl-pair"]] * 2
    trainer.model.train()
    out = GRPOTrainer._generate_and_score_completions(trainer, rows)
    assert out["num_images"] == [1, 1, 2, 2] and out["image_grid_thw"].shape[0] == 6
    visual = (out["mm_token_type_ids"] != 0).sum(-1).tolist()
    assert visual == _tokens_per_row(out["image_grid_thw"], [1, 1, 2, 2]) and visual[2] > visual[0]

    def view(name, micro, params=None):
        inputs = BlindInputs(model=trainer.model, batch=out, rows=rows, group_size=2, step=0, seed=0, temperature=1.0,
                             micro_batch=micro,
                             forward=lambda **o: trainer._image_logprobs({**out, **o}, micro, force=True),
                             blind_forward=blind_forward,
                             image_processor=trainer.processing_class.image_processor)
        return BLIND_VIEWS.get(name).fn(inputs, params)  # (log-probs, statistics)

    whole, _ = view("attention_mask", 4)
    assert torch.allclose(view("attention_mask", 1)[0], whole, atol=1e-5)
    image = trainer._image_logprobs(out, 4, force=True)
    mask = out["completion_mask"].bool()
    assert (whole - image)[2:][mask[2:]].abs().max() > 1e-4  # the 2-image rows' images are hidden
    blackened, stats = view("patch_blackening", 4, PatchBlackeningParams(p=0.5))
    assert blackened.shape == whole.shape and torch.isfinite(blackened[mask]).all()
    assert 0.0 < stats["blackened_fraction"] < 1.0  # relative: the trainer logs it as blind/blackened_fraction


@pytest.mark.slow
@pytest.mark.parametrize("method", ["pgpo", "vppo"])  # attention-mask blind view, patch-blackening blind view
def test_two_step_training_rolls_out_the_two_image_row(split, tiny_dir, tmp_path, monkeypatch, method):
    from pgpo.training.run import train
    from pgpo.training.trainer import PGPOTrainer

    seen = []
    shape = PGPOTrainer._shape_advantages

    def recording(self, out, mode):  # observes the real rollout batch, then shapes it unchanged
        seen.append({"ids": [r["id"] for r in out["rows"]], "num_images": list(out["num_images"]),
                     "grids": out["image_grid_thw"].shape[0],
                     "visual": (out["mm_token_type_ids"] != 0).sum(-1).tolist(),
                     "expected": _tokens_per_row(out["image_grid_thw"], list(out["num_images"]))})
        return shape(self, out, mode)

    monkeypatch.setattr(PGPOTrainer, "_shape_advantages", recording)
    run = train(_recipe(tiny_dir, split[0]), load_method(method), tmp_path / method)
    assert run.global_steps == 2
    pairs = [(b, i) for b in seen for i, rid in enumerate(b["ids"]) if rid == "virl-pair"]
    assert pairs, f"the 2-image row was never rolled out: {[b['ids'] for b in seen]}"
    for batch, i in pairs:
        assert batch["num_images"][i] == 2
    for batch in seen:  # every row carries the visual tokens of all its images, and only those
        assert batch["grids"] == sum(batch["num_images"]) and batch["visual"] == batch["expected"]
    rows = [json.loads(line) for line in (tmp_path / method / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert all(r["dependency/mean"] > 0 and r["faults/nonfinite_logp_groups"] == 0 for r in rows)
    if method == "vppo":
        assert all(0 < r["blind/blackened_fraction"] < 1 for r in rows)


@pytest.mark.slow
def test_evaluation_renders_a_two_image_row_with_two_image_blocks(split, tiny_dir, tmp_path):
    """The converted split as a suite through lmms-eval's task: the 2-image document yields two visuals, the
    model class's prompt (= the training prompt) has two image blocks, the chat form two image parts, and the
    model answers it."""
    from pgpo.evaluation import benchmarks as bm
    from pgpo.evaluation.config import EvalConfig
    from pgpo.evaluation.docs import FAILED_PREFIX, doc_to_messages
    from pgpo.evaluation.generate import gen_kwargs, make_task
    from pgpo.evaluation.lmms_model import PGPOVisionLanguageModel
    from pgpo.tiny.sampling import prompt_texts

    data = tmp_path / "data"
    shutil.copytree(split[0], data)
    (data / "train.jsonl").rename(data / "suite_bars.jsonl")
    write_manifest(data, {"note": "the converted fixture as a suite"})
    bench = bm.all_benchmarks()["tiny_bars"]
    data_file, _ = bm.tiny_inputs(bench, data, tmp_path / "run")
    task = make_task(bench, bm.task_override(bench, 1, gen_kwargs(EvalConfig()), data_file), chat=False)
    task.build_all_requests()
    docs = task.eval_docs
    index = next(i for i, d in enumerate(docs) if d["id"] == "virl-pair")
    request = next(r for r in task.instances if r.args[3] == index)
    context, _, doc_to_visual, *_ = request.args
    assert len(doc_to_visual(docs[index])) == 2
    lm = PGPOVisionLanguageModel(pretrained=str(tiny_dir), batch_size=4, seed=0)
    record = {r.id: r for r in load_split(data / "suite_bars.jsonl")}["virl-pair"]
    prompt = lm._prompt(context, 2)
    assert prompt == prompt_texts(lm.processor, [record])[0] and prompt.count("<|vision_start|>") == 2
    assert [c["type"] for c in doc_to_messages(docs[index])[1]["content"]] == ["image", "image", "text"]
    lm.task_dict = {"t": {"test": docs}}
    kwargs = {"temperature": 1.0, "top_p": 1.0, "max_new_tokens": 4}
    answer = lm.generate_until([SimpleNamespace(args=(context, kwargs, doc_to_visual, index, "t", "test"))])
    assert not answer[0].startswith(FAILED_PREFIX), answer[0]
