"""The `loadtest` command: shared arguments and the provider factory (common), then one
module per command group."""
