from diziner.cli import entry

entry()
