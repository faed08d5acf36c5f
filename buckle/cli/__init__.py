"""The `buckle` command line (typer). Thin: parse arguments, call the library, print."""
