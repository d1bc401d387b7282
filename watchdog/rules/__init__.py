"""Rules: conditions, evaluation and the decision plan. Pure: no I/O, no clock."""
