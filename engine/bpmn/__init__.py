"""The diagram language: safe parsing, forms, the script sandbox, lint, test runs, change summaries,
instance migration between versions and the SLA decision table. Knows nothing of the database."""
