"""robot subpackage."""
