"""Applying a poll's plan: state changes, events, then Tapis calls and following cancels."""
