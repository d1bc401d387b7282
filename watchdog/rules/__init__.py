"""Rules: conditions, evaluation, the per-job and per-poll plans, the breaker. Pure."""
