"""veilnet's own tasks, each declared under the entry-point group ``veilnet.tasks`` in ``pyproject.toml``."""
