"""CLI commands, one module per area; registered in dispatcher/cli.py."""
