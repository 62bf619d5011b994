"""The pieces of the ``execsvc`` command: exit codes, output, the database and REST seams, operator commands, doctor."""
