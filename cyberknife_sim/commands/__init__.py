"""Sub-commands of ``cksim``: one module each, with ``register(subparsers)``."""
