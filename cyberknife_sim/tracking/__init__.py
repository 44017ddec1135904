"""tracking subpackage."""
