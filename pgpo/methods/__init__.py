"""The extension point: the registries (registry) of shapers, blind views and loss terms, the token-visual-
dependency math (dependency), the shapers (shaping), blind views (blind), loss terms, and the resolved components
of a method YAML (components). Pure tensor functions and registrations: nothing here imports trl or the training
package (tests/test_structure.py enforces it), and torch is imported by the first computation, not by a registration
(pgpo.util.lazy): checking a method file imports no model code (tests/cli/test_light_imports.py)."""
