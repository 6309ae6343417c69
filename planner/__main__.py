from planner.cli.app import cli

cli()
