"""The README and docs/ say only what the repository holds (issue 25: "keep every number in it generated or checked
by a test"). Each number they state about a config, a lock or a committed result is read back from that file here;
the tables they quote are the committed reference tables; every relative link resolves; nothing cites a file
outside the repository. Fast: no model, no training, no workflow."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DOCS = sorted((REPO / "docs").glob("*.md"))
PAGES = [REPO / "README.md", *DOCS]


def text(path: str | Path) -> str:
    return (REPO / path).read_text()


def flat(path: str | Path) -> str:
    """A page with its line breaks and runs of spaces as one space: a phrase is found wherever it wraps."""
    return re.sub(r"\s+", " ", text(path))


def contains(path: str, phrase: str) -> None:
    assert re.sub(r"\s+", " ", phrase) in flat(path), f"{path} does not say {phrase!r} (the file it quotes does)"


# -- the README: short, the quick start first, the commands CI runs --------------------------------------------------

def fenced_commands(page: str) -> list[str]:
    """The lines of a page's ```bash blocks, comments stripped."""
    blocks = re.findall(r"```bash\n(.*?)```", page, flags=re.S)
    return [line.split("  #")[0].strip() for block in blocks for line in block.splitlines() if line.strip()]


def test_the_readme_is_short_and_its_quick_start_comes_first():
    readme = text("README.md")
    assert len(readme.splitlines()) < 200
    headings = re.findall(r"^## (.+)$", readme, flags=re.M)
    assert headings[:2] == ["Install", "Quick start"], headings
    assert {"Test", "Paper scale", "Documentation"} <= set(headings)
    assert len(readme.split()) < 1500  # it was ~6,500 words: the reference lives in docs/


def test_ci_runs_the_readme_s_install_and_test_commands():
    commands = fenced_commands(text("README.md"))
    ci = [line.strip() for line in text(".ci/run").splitlines() if line.strip() and not line.startswith("#")]
    install, test = "bash scripts/install.sh", "python -m pytest -q tests"
    assert install in commands and test in commands
    assert install in ci and test in ci and ci.index(install) < ci.index(test)


def test_the_quick_start_runs_the_quick_profile_that_says_it_is_a_plumbing_check():
    commands = fenced_commands(text("README.md"))
    assert "snakemake --cores all reproduce_table1 --configfile workflows/config/quick.yaml" in commands
    quick = yaml.safe_load(text("workflows/config/quick.yaml"))
    assert quick["extends"] == "tiny.yaml" and "plumbing check" in quick["table_note"]
    snakefile = text("Snakefile") + "".join(p.read_text() for p in (REPO / "workflows/rules").glob("*.smk"))
    for target in ("reproduce_table1", "table7", "ablate_thresholds", "dependency_report", "credit_testbed"):
        assert re.search(rf"^\s*rule {target}:", snakefile, flags=re.M), target


# -- links and citations ------------------------------------------------------------------------------------------

def slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    heading = heading.strip().lower().replace("`", "")
    return re.sub(r"[^\w\- ]", "", heading).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    page = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    return {slug(h) for h in re.findall(r"^#+ (.+)$", page, flags=re.M)}


LINKED = PAGES + [REPO / "baselines/README.md", REPO / "pgpo/lmms_tasks/README.md"]


@pytest.mark.parametrize("page", LINKED, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(page):
    body = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    links = re.findall(r"\]\(([^)\s]+)\)", body)
    for link in links:
        if re.match(r"[a-z]+:", link):  # https:, mailto:
            continue
        target, _, anchor = link.partition("#")
        path = (page.parent / target).resolve() if target else page
        assert path.exists(), f"{page.relative_to(REPO)}: link to {link} (no such file)"
        assert REPO in path.parents or path == REPO, f"{page.relative_to(REPO)}: {link} leaves the repository"
        if anchor and path.suffix == ".md":
            assert anchor in anchors(path), f"{page.relative_to(REPO)}: no heading #{anchor} in {target or 'itself'}"


def test_every_docs_page_is_in_the_readme_s_table_of_contents():
    readme = text("README.md")
    assert DOCS, "docs/ is empty"
    for page in DOCS:
        assert f"](docs/{page.name})" in readme, f"docs/{page.name} is not linked from the README"


OUTSIDE = re.compile(r"\.\./shared|/work/shared|shared/reference")


def test_nothing_cites_a_file_outside_the_repository():
    """The method is the paper's (arXiv 2604.01840) and the code's: no documentation or comment points at a file
    on a development machine."""
    roots = ["README.md", "docs", "baselines", "pgpo", "workflows", "scripts", "requirements", "profiles",
             "benchmarks", "Snakefile", ".ci", "tests", "results/README.md", "environment.yml", "pyproject.toml"]
    files = []
    for root in roots:
        p = REPO / root
        files += [p] if p.is_file() else [f for f in p.rglob("*") if f.is_file()]
    bad = []
    for f in files:
        if f.suffix not in {"", ".md", ".py", ".yaml", ".yml", ".txt", ".sh", ".smk", ".toml", ".rst", ".tsv"} or \
                f == Path(__file__).resolve() or "fixtures/realdata" in str(f) or "__pycache__" in f.parts:
            continue
        try:
            body = f.read_text()
        except (UnicodeDecodeError, OSError):
            continue
        bad += [f"{f.relative_to(REPO)}: {m.group(0)}" for m in OUTSIDE.finditer(body)]
    assert bad == []
    for page in ("README.md", "docs/evaluation.md"):
        assert "2604.01840" in text(page)
    readme = text("README.md")
    assert "pgpo/methods/shaping.py" in readme and "pgpo/methods/dependency.py" in readme


# -- numbers read back from the files they come from ---------------------------------------------------------------

def load_yaml(path: str) -> dict:
    return yaml.safe_load(text(path))


def lookup(tree, key: str):
    """tree's value at a dotted key; a key holding a dot itself (`train_set: {samples.every: 1}`) is found too."""
    parts = key.split(".")
    while parts:
        for n in range(len(parts), 0, -1):
            head = ".".join(parts[:n])
            if isinstance(tree, dict) and head in tree:
                tree, parts = tree[head], parts[n:]
                break
            if not isinstance(tree, dict) and n == 1 and hasattr(tree, head):
                tree, parts = getattr(tree, head), parts[1:]
                break
        else:
            raise KeyError(f"{key}: no {parts[0]!r}")
    return tree


def source_value(where: str, key: str):
    if where.endswith((".yaml", ".yml")):
        return lookup(load_yaml(where), key)
    import importlib

    module = importlib.import_module(where)
    return lookup(module, key)


def stated(value: str):
    """A table cell as a value: `0, 1` -> [0, 1], `2e-3` -> 0.002."""
    items = [float(v) for v in value.strip().split(", ")]
    return items if ", " in value else items[0]


SETTINGS = ["docs/tiny-default.md", "docs/paper-scale.md"]  # pages with a "what | value | set in" table


def settings_rows() -> list[tuple[str, str, str, str]]:
    rows = []
    for line in "\n".join(text(page) for page in SETTINGS).splitlines():
        m = re.match(r"\| (.+?) \| (.+?) \| `([^`]+)` `([^`]+)` \|$", line)
        if m:
            rows.append(m.groups())
    return rows


def test_the_settings_table_names_its_sources():
    rows = settings_rows()
    assert len(rows) >= 35
    keys = {(w, k) for _, _, w, k in rows}
    for page in SETTINGS:
        assert "| what | value | set in |" in text(page), page
    assert ("workflows/config/tiny.yaml", "train_set.max_steps") in keys  # the default the README quotes
    assert ("workflows/config/train/tiny.yaml", "max_steps") in keys  # the recipe's own, by hand


@pytest.mark.parametrize("what,value,where,key", settings_rows(), ids=lambda v: str(v)[:40])
def test_every_setting_quoted_is_the_one_its_file_holds(what, value, where, key):
    actual = source_value(where, key)
    expect = stated(value)
    if isinstance(actual, list) and not isinstance(expect, list):
        expect = [expect]  # one seed, written as a number
    if isinstance(expect, list):
        assert [float(v) for v in actual] == expect, f"{what}: docs say {value}, {where} {key} is {actual}"
    else:
        assert float(actual) == pytest.approx(expect), f"{what}: docs say {value}, {where} {key} is {actual}"


def test_the_readme_states_no_number_its_sources_do_not():
    """Every number in the README is one of these, each read from its file (an identifier checks its own form)."""
    tiny, quick, paper = (load_yaml(f"workflows/config/{p}.yaml") for p in ("tiny", "quick", "paper"))
    sources = {
        "30": [tiny["train_set"]["max_steps"]],
        "900": [tiny["warmstart"]["steps"]],
        "50": [tiny["data"]["eval_per_task"]],
        "8": [load_yaml("workflows/config/eval/tiny.yaml")["sampling"]["samples"], paper["resources"]["train"]["gpus"]],
        "2": [len(tiny["seeds"]), source_value("workflows/config/train/tiny.yaml", "threads")],
        "1": [quick["train_set"]["max_steps"]],
        "3": [quick["eval_set"]["limit"], load_yaml("workflows/config/accelerate/zero3.yaml")
              ["deepspeed_config"]["zero_stage"]],
        "7": [7],  # Qwen2.5-VL-7B: a size of the paper profile (checked below)
        "0": [0],  # PGPO_LIVE_MLFLOW=0 (checked below)
        "95": [95],  # the tables' interval (checked below)
        "27": [int(re.search(r"takes about\s*#?\s*(\d+) minutes", text("workflows/config/tiny.yaml")).group(1))],
    }
    identifiers = {"2604.01840", "2.5", "39"}  # the paper's arXiv id; Qwen2.5-VL; ViRL39K
    readme = text("README.md")
    for number in set(re.findall(r"\d+(?:\.\d+)*", readme)):
        assert number in sources or number in identifiers, f"README states {number}: add its source here"
        for value in sources.get(number, []):
            assert value == float(number), f"README says {number}, its source holds {value}"
    assert set(paper["sizes"]) == {"3b", "7b"} and "Qwen2.5-VL-3B" in paper["sizes"]["3b"]["model"]
    assert 'os.environ.get("PGPO_LIVE_MLFLOW", "1") == "0"' in text("pgpo/tracking/live.py")
    assert "95% CI" in text("pgpo/results/tables.py")
    assert "virl39k" in text("pgpo/data/virl39k.py").lower()


def lock(name: str) -> dict[str, str]:
    pins = {}
    for line in text(f"requirements/{name}").splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            package, version = line.split("==", 1)
            pins[package.lower().replace("_", "-")] = version.split(";")[0].strip()
    return pins


def test_the_install_page_quotes_the_locks():
    cpu, gpu = lock("lock-cpu.txt"), lock("lock-gpu.txt")
    contains("docs/install.md", f"({len(cpu)} packages: torch {'.'.join(cpu['torch'].split('.')[:2])} CPU, "
                                f"transformers {'.'.join(cpu['transformers'].split('.')[:2])}, "
                                f"trl {'.'.join(cpu['trl'].split('.')[:2])}, lmms-eval {cpu['lmms-eval']}, "
                                f"filelock {cpu['filelock']}")
    contains("docs/install.md", f"torch {gpu['torch']}, vLLM {gpu['vllm']}, flashinfer, the NVIDIA libraries; "
                                f"{len(gpu)} packages), flash-attn {gpu['flash-attn']}")
    differ = sorted(p for p in cpu if p in gpu and cpu[p] != gpu[p] and p != "torch")
    assert differ == ["fastapi", "numpy", "pandas", "snakemake-executor-plugin-slurm"]
    contains("docs/install.md", f"differs in {len(differ)} transitive packages vLLM constrains (numpy {gpu['numpy']}, "
                                f"pandas {gpu['pandas']}")
    assert cpu["torch"] == "2.13.0+cpu"


def minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {round(seconds % 60):02d} s"


def test_the_slurm_and_quick_profile_times_are_the_benchmark_s():
    r = json.loads(text("benchmarks/results/slurm_vs_local.json"))
    contains("docs/running.md", f"{minutes(r['slurm']['wall_s'])} through Slurm against "
                                f"{minutes(r['local']['wall_s'])} locally ({r['ratio']}x")
    contains("docs/running.md", f"({r['slurm']['slurm_jobs']} Slurm jobs;")
    contains("docs/running.md", f"{minutes(r['local']['wall_s'])} on 2 idle cores, `benchmarks/results/slurm_vs_local.json`")
    assert r["table_equal_but_mlflow_ids"] and r["differing_cells"] == []


def step_profile(name: str = "rl_step_profile.json") -> dict:
    return {m: v["median_seconds"] for m, v in json.loads(text(f"benchmarks/results/{name}"))["methods"].items()}


def test_one_pgpo_dapo_cost_ratio_everywhere_and_it_is_the_benchmark_s():
    p = step_profile()
    ratio = f"{p['pgpo']['total'] / p['dapo']['total']:.2f}x"
    found = []
    for page in PAGES:
        found += [(page.name, m) for m in re.findall(r"(\d+(?:\.\d+)?x) a DAPO step", flat(page))]
    assert found and all(m == ratio for _, m in found), (ratio, found)
    for page in ("docs/paper-scale.md", "docs/tiny-default.md"):
        contains(page, f"{p['pgpo']['total']:.2f} s against {p['dapo']['total']:.2f} s")
    # the old, unfiled ratios are gone
    assert not re.search(r"1\.235x|PGPO 1\.61x", "".join(flat(page) for page in PAGES))


def test_the_testbed_step_times_are_the_benchmark_s():
    p = step_profile()
    before, after = p["dapo/before"], p["dapo"]
    pb, pa = p["pgpo/before"], p["pgpo"]
    contains("docs/testbed.md", f"DAPO {before['total']:.2f} -> {after['total']:.2f} s a step "
                                f"({before['total'] / after['total']:.2f}x), PGPO {pb['total']:.2f} -> {pa['total']:.2f} s "
                                f"({pb['total'] / pa['total']:.2f}x); generation {before['generation']:.2f} -> "
                                f"{after['generation']:.2f} s and {pb['generation']:.2f} -> {pa['generation']:.2f} s "
                                f"({before['generation'] / after['generation']:.2f}x, "
                                f"{pb['generation'] / pa['generation']:.2f}x)")
    contains("docs/testbed.md", f"DAPO {before['total']:.2f} s, PGPO {pb['total']:.2f} s; PGPO's step: generation "
                                f"{100 * pb['generation'] / pb['total']:.0f}% ({pb['generation']:.2f} s")
    contains("docs/testbed.md", f"the blind pass and shaping {100 * pb['shaping'] / pb['total']:.0f}% "
                                f"({pb['shaping']:.2f} s)")
    xeon = step_profile("rl_step_profile_xeon.json")
    contains("docs/testbed.md", f"DAPO {xeon['dapo/before']['total']:.2f} -> {xeon['dapo']['total']:.2f} s "
                                f"({xeon['dapo/before']['total'] / xeon['dapo']['total']:.2f}x) and PGPO "
                                f"{xeon['pgpo/before']['total']:.2f} -> {xeon['pgpo']['total']:.2f} s")
    totals = {m: float(re.search(r"Self CPU time total: ([\d.]+)s", text(f"benchmarks/results/rl_step_ops_{m}.txt"))
                       .group(1)) / 3 for m in ("pgpo", "dapo")}  # steps 2-4
    contains("docs/testbed.md", f"PGPO {totals['pgpo']:.1f} s a step (DAPO {totals['dapo']:.1f})")


def test_the_real_dimension_peaks_are_the_benchmark_s():
    names = {"weights": "weights", "vision": "vision", "image_forward": "image pass", "blind": "blind pass",
             "loss": "loss", "loss_gc": "loss with checkpointing"}
    page = flat("docs/paper-scale.md")
    for size in ("3b", "7b"):
        rows = json.loads(text(f"benchmarks/results/real_dimensions_{size}.json"))["rows"]
        for component, row in rows.items():
            if component not in names:
                continue
            gib, ratio = row["measured"] / 2**30, row["ratio"]
            phrase = f"{names[component]} {gib:.2f}" + (" GiB" if component == "weights" else "") + f" ({ratio:.2f})"
            assert phrase in page, f"docs/paper-scale.md: {size} {phrase!r}"
        if size == "7b":
            assert f"{rows['weights']['full_depth'] / 2**30:.1f} GiB at full depth" in page


def reference_tables() -> str:
    return "\n".join(p.read_text() for p in REPO.glob("results/**/reference/**/*.md"))


def test_every_results_table_quoted_is_a_committed_reference_table():
    reference = reference_tables()
    quoted = 0
    for page in PAGES:
        for block in re.findall(r"^(\| row \|.*?)(?:\n\n|\Z)", page.read_text(), flags=re.S | re.M):
            quoted += 1
            assert block.strip() in reference, f"{page.name}: a table not in results/**/reference:\n{block[:300]}"
    assert quoted >= 2  # Table 1 and the threshold ablation of the tiny default


def test_the_tiny_default_s_stage_times_and_dependency_are_the_reference_s():
    stages = text("results/tiny/reference/stage_times.txt")
    job = {m.group(1): (int(m.group(2)), float(m.group(3)))
           for m in re.finditer(r"^\s+(\w+)\s+(\d+) job\(s\)\s+sum\s+([\d.]+) s", stages, flags=re.M)}
    wall = float(re.search(r"this invocation: ([\d.]+) s wall", stages).group(1))
    contains("docs/tiny-default.md", f"(build {job['build_tiny'][1]:.0f} s, data {job['make_data'][1]:.0f} s, warm "
                                     f"start {job['warm_start'][1]:.0f} s, {job['train'][0]} RL runs of 30 steps")
    contains("docs/tiny-default.md", f"{job['train'][1]:.0f}\njob-seconds")
    contains("docs/tiny-default.md", f"the {job['train_ablation'][0]} rows of `workflows/config/ablation_thresholds.tsv`; "
                                     f"{minutes(wall)} with")
    grid = [line for line in text("workflows/config/ablation_thresholds.tsv").splitlines()[1:] if line.strip()]
    assert len(grid) == job["train_ablation"][0]
    report = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", text("results/tiny/reference/dependency.html")))
    m = re.search(r"\ball ([\d.]+) ([\d.]+) ([\d.]+)", report)
    contains("docs/tiny-default.md", f"is {m.group(1)} against {m.group(2)} on all other tokens, and "
                                     f"{100 * float(m.group(3)):.1f}% of tokens")


def claim(path: str, claim_name: str, measurement: str) -> dict:
    rows = json.loads(text(path))["rows"]
    return next(r for r in rows if r["claim"] == claim_name and r["measurement"].startswith(measurement))


def test_the_testbed_results_are_the_committed_claims():
    for path, label in (("results/testbed/reference/credit_testbed_claims.json", "E"),
                        ("results/testbed/reference/core_G/credit_testbed_claims.json", "G")):
        share = claim(path, "sparse_dependency", "pgpo: share")
        contains("docs/testbed.md", f"{share['value']:.3f} [{share['ci95_low']:.3f}, {share['ci95_high']:.3f}]")
        assert share["verdict"] == "supported", label
    e = "results/testbed/reference/credit_testbed_claims.json"
    forced, auc = claim(e, "learning", "forced-answer"), claim(e, "learning", "area under")
    contains("docs/testbed.md", f"forced-answer accuracy PGPO - DAPO {100 * forced['value']:+.2f} points "
                                f"[{100 * forced['ci95_low']:+.2f}, {100 * forced['ci95_high']:+.2f}]")
    contains("docs/testbed.md", f"the training-accuracy curve {100 * auc['value']:+.2f} points "
                                f"[{100 * auc['ci95_low']:+.2f}, {100 * auc['ci95_high']:+.2f}]")
    g = "results/testbed/reference/core_G/credit_testbed_claims.json"
    forced, auc = claim(g, "learning", "forced-answer"), claim(g, "learning", "area under")
    contains("docs/testbed.md", f"**{100 * forced['value']:+.2f}\npoints [{100 * forced['ci95_low']:+.2f}, "
                                f"{100 * forced['ci95_high']:+.2f}]**")
    contains("docs/testbed.md", f"**{100 * auc['value']:+.2f} points\n[{100 * auc['ci95_low']:+.2f}, "
                                f"{100 * auc['ci95_high']:+.2f}]**")
    ratio = claim(g, "variance_reduction", "noise-scale ratio dapo/pgpo, Adam-preconditioned, at dapo-s0")
    contains("docs/testbed.md", f"{ratio['value']:.0f}x PGPO's [{ratio['ci95_low']:.0f},\n{ratio['ci95_high']:,.0f}]")


def test_the_vllm_comparison_is_the_benchmark_s():
    r = text("benchmarks/results/vllm_vs_hf_eval.txt")
    hf = re.search(r"pgpo_vlm\s+mean avg@k ([\d.]+)", r).group(1)
    vllm = re.search(r"vllm\s+mean avg@k ([\d.]+)", r).group(1)
    speed = re.search(r"vLLM / HF tokens/s: ([\d.]+x)", r).group(1)
    ids = re.search(r"prompt ids equal .*?: (\d+/\d+)", r).group(1)
    contains("docs/testing.md", f"{hf} HF vs\n{vllm} vLLM")
    contains("docs/testing.md", f"vLLM-CPU is {speed} HF's tokens/s")
    contains("docs/testing.md", f"prompt ids equal {ids}")


def test_the_planner_and_defaults_of_the_method_are_quoted_as_the_code_has_them():
    from pgpo.config.schema import DynamicSamplingConfig
    from pgpo.methods.shaping import PGPOParams

    contains("docs/decisions.md", f"**eps** = {PGPOParams.eps:.0e}".replace("e-0", "e-"))
    contains("docs/decisions.md", f"`max_rounds` ({DynamicSamplingConfig.max_rounds})")
    contains("docs/decisions.md", f"`dynamic_sampling.max_capped_steps` ({DynamicSamplingConfig.max_capped_steps})")
    from pgpo.cli import build_parser

    default = build_parser().parse_args(["status", "results/tiny"]).stale_after  # what `pgpo status` uses
    contains("docs/running.md", f"`--stale-after` (default {default:.0f} s)")
