"""Tapis: the only place importing tapipy (client.py); the HTTP layer under it; plain data."""
