"""Acting on a plan: cancels with a fresh status check, following them, the circuit breaker."""
