"""CLI subcommands that belong to the runtime itself."""
