"""The daemon: its root task group, sd_notify, metrics and health, notifications."""
