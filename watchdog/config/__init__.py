"""Configuration: YAML -> validated, frozen model; ${VAR}, *_file secrets; the rule schema."""
