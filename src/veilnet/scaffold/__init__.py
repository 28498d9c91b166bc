"""``veilnet new-task``: a task package scaffolded from a :class:`~veilnet.scaffold.spec.TaskSpec`."""

from veilnet.scaffold.render import render_task, write_task
from veilnet.scaffold.spec import Field, TaskSpec, load_spec

__all__ = ["Field", "TaskSpec", "load_spec", "render_task", "write_task"]
