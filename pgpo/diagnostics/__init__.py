"""Checks and diagnostics: the gradient diagnostic, the blind-view check, the known-bugs checks, the install smoke
check, and the `pgpo power` / `pgpo gradient-diagnostic` commands (cli)."""
