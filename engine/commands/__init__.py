"""One module per `engine` subcommand; each exposes `register(subparsers)` and stays light to import."""
