"""Configuration: typed dataclasses for a method and a training recipe (schema), built from YAML with a docstring
per field (yamlconf); `--set` overrides (overrides); the field reference `pgpo methods --fields` prints."""
