# Planning helpers and constants of the credit-assignment testbed's rules (testbed.smk); functions of the
# config only, kept apart from the rules (snakemake --lint).
from pgpo.testbed import plan as testbed_plan

if "testbed" in config and workflow.is_main_process:
    try:
        testbed_plan.check(config, REPO)
    except ConfigError as e:
        raise WorkflowError(f"workflow config: {e}") from None

TESTBED = LAYOUT.testbed
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
TESTBED_DIAGNOSTIC_POINTS = (testbed_plan.diagnostic_points(config) if "testbed" in config else []) or ["none"]


def testbed_diagnostic_methods(wc):
    """--method per diagnosed arm and --reference (YAML paths made absolute)."""
    methods, reference = testbed_plan.diagnostic_methods(config)
    spec = lambda m: repo_path(m) if m.endswith((".yaml", ".yml")) else m
    return " ".join([*(f"--method {spec(m)}" for m in methods), f"--reference {spec(reference)}"])


def testbed_claims_outputs():
    files = testbed_plan.claims_outputs(config)
    return {"md": files["md"], "json": files["json"],
            "html": report(files["html"], caption="../report/testbed_claims.rst", category="Credit testbed",
                           subcategory="claims")}


def testbed_claims_files():
    """The claims table's files when testbed.claims is configured (both testbed targets include it)."""
    return list(testbed_plan.claims_outputs(config).values()) if testbed_plan.claims(config) else []
