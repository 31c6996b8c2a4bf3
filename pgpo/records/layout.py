"""The results root of one workflow profile (results/tiny, results/paper_3b, ...): every path under it, here only.

    <root>/model/<name>/                    the tiny base model and its warm start (build_tiny profiles)
    <root>/data/                            the tiny synthetic data
    <root>/runs/<size>/<method>-s<seed>/    a training run (run.json, metrics.jsonl, checkpoint-N/, final/)
    <root>/ablation/<size>/<variant>/s<seed>/   a training run of the threshold ablation
    <root>/eval/<size>/<run>/               an evaluation (samples/, <benchmark>.json, shard-<shard>.json);
                                            <run> is base, <method>-s<seed> or ablation/<variant>/s<seed>
    <root>/tracking/<target>.json           the MLflow ids of a target's runs
    <root>/<target>.{md,csv,html,...}       a target's tables and figures
    <root>/reports/, <root>/testbed/        the dependency report; the credit testbed (pgpo.testbed.plan)
    <root>/logs/..., <root>/benchmarks/...  one log and one Snakemake benchmark file per job

Every method formats strings only, so the workflow's rules pass Snakemake wildcards through it:
`Layout(ROOT).run("{size}", "{method}", "{seed}")` is the pattern of the train rule's directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pgpo.records.stages import METRICS_FILE, RUN_CONFIG_FILE, RUN_FILE, SAMPLES_DIR

RUN_TOPS = ("runs", "ablation")  # the folders training runs live in
ABLATION_RUN = "ablation/"      # an evaluation's <run> of an ablation training starts with this


@dataclass(frozen=True)
class Layout:
    root: str
    """The results root, e.g. results/tiny (as given: relative paths stay relative)."""

    def __post_init__(self):
        object.__setattr__(self, "root", str(self.root))

    # ---------------------------------------------------------------------------------------------- stages
    def model(self, name: str) -> str:
        return f"{self.root}/model/{name}"

    @property
    def data(self) -> str:
        return f"{self.root}/data"

    def run(self, size: str, method: str, seed) -> str:
        return f"{self.root}/runs/{size}/{method}-s{seed}"

    def ablation_run(self, size: str, variant: str, seed) -> str:
        return f"{self.root}/ablation/{size}/{variant}/s{seed}"

    def eval(self, size: str, run: str) -> str:
        """run: `base`, `<method>-s<seed>` or `ablation/<variant>/s<seed>`."""
        return f"{self.root}/eval/{size}/{run}"

    def eval_by_hand(self, name: str) -> str:
        """Where `pgpo evaluate` without --out writes (the profile's eval/ folder, no model size)."""
        return f"{self.root}/eval/{name}"

    def eval_shard(self, size: str, run: str, shard: str) -> str:
        return f"{self.eval(size, run)}/shard-{shard}.json"

    def trained_run(self, size: str, run: str) -> str:
        """The training directory an evaluation's <run> (not `base`) scored."""
        if run.startswith(ABLATION_RUN):
            return f"{self.root}/ablation/{size}/{run[len(ABLATION_RUN):]}"
        return f"{self.root}/runs/{size}/{run}"

    def tracking(self, target: str) -> str:
        return f"{self.root}/tracking/{target}.json"

    def target(self, target: str, ext: str = "") -> str:
        """<root>/<target>.<ext> (without `ext`: the prefix every file of the target shares)."""
        return f"{self.root}/{target}" + (f".{ext}" if ext else "")

    def report(self, name: str) -> str:
        return f"{self.root}/reports/{name}"

    @property
    def testbed(self) -> str:
        return f"{self.root}/testbed"

    def log(self, *parts: str) -> str:
        return f"{self.root}/logs/{'/'.join(parts)}.log"

    def benchmark(self, *parts: str) -> str:
        return f"{self.root}/benchmarks/{'/'.join(parts)}.tsv"

    def train_log(self, size: str, method: str, seed) -> str:
        return self.log("train", size, f"{method}-s{seed}")

    def ablation_log(self, size: str, variant: str, seed) -> str:
        return self.log("ablation", size, variant, f"s{seed}")

    def eval_log(self, size: str, run: str, shard: str) -> str:
        return self.log("eval", size, run, shard)

    # ------------------------------------------------------------------------------ what is on disk (status)
    def training_runs(self) -> list[Path]:
        """Training directories under runs/ and ablation/ with run_config.json, metrics.jsonl or run.json."""
        found = set()
        for top in RUN_TOPS:
            for name in (RUN_CONFIG_FILE, METRICS_FILE, RUN_FILE):
                found |= {p.parent for p in (Path(self.root) / top).rglob(name) if "checkpoint-" not in str(p.parent)}
        return sorted(found)

    def log_of_run(self, run_dir: str | Path) -> Path:
        """The training log of a run directory under this root."""
        rel = Path(run_dir).relative_to(self.root)
        kind = "train" if rel.parts[0] == "runs" else "ablation"
        return Path(self.root) / "logs" / kind / Path(*rel.parts[1:]).with_suffix(".log")

    def evaluations(self) -> list[tuple[Path, str | None, Path | None]]:
        """(evaluation directory, shard, log) of every evaluation job with a log, then every hand-run evaluation
        directory (samples/, no log) under eval/."""
        root, jobs, seen = Path(self.root), [], set()
        logs = root / "logs" / "eval"
        for log in sorted(logs.rglob("*.log")) if logs.is_dir() else []:
            eval_dir = root / "eval" / log.relative_to(logs).parent
            jobs.append((eval_dir, log.stem, log))
            seen.add(eval_dir)
        for samples in sorted((root / "eval").rglob(SAMPLES_DIR)) if (root / "eval").is_dir() else []:
            if samples.is_dir() and samples.parent not in seen:
                jobs.append((samples.parent, None, None))
                seen.add(samples.parent)
        return jobs

    @classmethod
    def of_run(cls, run_dir: str | Path) -> Layout | None:
        """The layout a training directory lies in (<root>/runs/... or <root>/ablation/...), else None (a run
        made by hand outside any workflow root)."""
        path = Path(run_dir).resolve()
        for parent in path.parents:
            if parent.name in RUN_TOPS and parent.parent != parent:
                return cls(str(parent.parent))
        return None
