"""The state store: schema, migrations and the store itself."""
