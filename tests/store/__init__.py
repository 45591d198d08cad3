"""The repository and the schema on both databases: migrations, mappings, and the SQL that must
agree with the domain's rules."""
