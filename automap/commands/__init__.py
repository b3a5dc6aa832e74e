"""One module per `automap` subcommand: HELP, add_arguments(parser) and run(args) -> exit status."""
