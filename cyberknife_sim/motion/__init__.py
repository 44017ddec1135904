"""motion subpackage."""
