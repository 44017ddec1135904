"""registration subpackage."""
