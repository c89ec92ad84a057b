"""The `promptloop` command line (Typer). Commands parse, call the SDK or a service, and print."""
