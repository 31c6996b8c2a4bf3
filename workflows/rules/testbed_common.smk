# Planning helpers and constants of the credit-assignment testbed's rules (testbed.smk); functions of the
# config only, kept apart from the rules (snakemake --lint).
from pgpo.testbed import plan as testbed_plan

if "testbed" in config and workflow.is_main_process:
    try:
        testbed_plan.check(config, REPO)
    except ConfigError as e:
        raise WorkflowError(f"workflow config: {e}") from None

TESTBED = f"{ROOT}/testbed"
TESTBED_VARIANTS = testbed_plan.variants(config) if "testbed" in config else ["none"]
TESTBED_ARMS = list(config["testbed"]["arms"]) if "testbed" in config else ["none"]


def testbed_method(wc):
    """The arm's method: a name from baselines/, or a YAML path (relative to the repository)."""
    method = testbed_plan.method_of(config, wc.arm)
    return repo_path(method) if method.endswith((".yaml", ".yml")) else method


def testbed_table_outputs(table="full"):
    """A testbed table's files (table: full = every run of testbed.runs, core = testbed.core's runs)."""
    files = testbed_plan.table_outputs(config, table)
    sub = "" if table == "full" else f" ({table})"
    return {"md": files["md"], "csv": files["csv"], "tracking": files["tracking"],
            "html": report(files["html"], caption="../report/testbed_table.rst", category="Credit testbed",
                           subcategory=f"results{sub}"),
            "curves": report(files["curves"], caption="../report/testbed_curves.rst", category="Credit testbed",
                             subcategory=f"training{sub}")}
