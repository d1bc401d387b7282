"""What the command line runs besides the daemon: commands, demo, test-rules."""
