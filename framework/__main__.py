from framework.cli import command

raise SystemExit(command())
