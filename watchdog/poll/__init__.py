"""One poll: every active job, whole or not at all."""
