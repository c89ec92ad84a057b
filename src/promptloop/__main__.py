"""`python -m promptloop` runs the command line."""

from promptloop.cli.main import main

main()
