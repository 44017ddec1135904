"""imaging subpackage."""
