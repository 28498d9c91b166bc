"""A :class:`~veilnet.scaffold.spec.TaskSpec` rendered into the files of a task package, and written out."""

from __future__ import annotations

from pathlib import Path
from string import Template

from veilnet.errors import ConfigError
from veilnet.scaffold import templates
from veilnet.scaffold.spec import Field, TaskSpec

__all__ = ["render_task", "write_task"]

_ANNOTATIONS = {"string": "str = Field(max_length=10_000)", "integer": "int", "number": "float = Field(allow_inf_nan=False)",
                "boolean": "bool"}
_RANDOM = {"string": '" ".join(rng.choice(words) for _ in range(rng.randint(3, 12)))',
           "integer": "rng.randint(0, 1_000_000)", "number": "round(rng.uniform(-1000.0, 1000.0), 4)",
           "boolean": "rng.random() < 0.5"}
_CONSTANT = {"string": '""', "integer": "0", "number": "0.0", "boolean": "False"}
_EXAMPLE = {"string": '"some text"', "integer": "42", "number": "0.5", "boolean": "true"}
_VERIFICATION_DOC = {
    "known_truth": "the validator builds each challenge from an answer it knows; quality is the share of outputs "
                   "that match it, and an answer below MIN_QUALITY fails",
    "reference": "the validator re-runs the reference engine on the same request; quality is the share of outputs "
                 "that match, and an answer below MIN_QUALITY fails",
    "similarity": "the validator re-runs the reference engine; text scores by edit-distance similarity and numbers "
                  "by relative distance, and an answer below MIN_QUALITY fails",
}


def _solve_expression(field: Field, index: int) -> str:
    start = (8 * index) % 48
    if field.type == "string":
        return f"digest[{start}:{start + 16}]"
    if field.type == "integer":
        return f"int(digest[{start}:{start + 8}], 16) % 1000"
    if field.type == "number":
        return f"int(digest[{start}:{start + 8}], 16) / 2**32"
    return f"int(digest[{start}], 16) % 2 == 1"


def _fields_doc(fields: tuple[Field, ...]) -> str:
    return ", ".join(f"`{f.name}` ({f.type})" for f in fields)


def render_task(spec: TaskSpec) -> dict[str, str]:
    """The package's files (relative path -> text)."""
    summary = spec.description or f"the {spec.name} task"
    values = {
        "name": spec.name, "module": spec.module, "distribution": spec.distribution, "prefix": spec.class_prefix,
        "summary": summary.replace('"', "'"), "verification": spec.verification,
        "verification_doc": _VERIFICATION_DOC[spec.verification],
        "min_quality": "0.8" if spec.verification == "similarity" else "0.5",
        "route": f"/v1/tasks/{spec.name}",
        "request_fields": "".join(f"    {f.name}: {_ANNOTATIONS[f.type]}\n" for f in spec.inputs),
        "answer_fields": "".join(f"    {f.name}: {_ANNOTATIONS[f.type]}\n" for f in spec.outputs),
        "solve_fields": "".join(f'        "{f.name}": {_solve_expression(f, i)},\n' for i, f in enumerate(spec.outputs)),
        "random_fields": "".join(f"        {f.name}={_RANDOM[f.type]},\n" for f in spec.inputs),
        "outputs": "{" + ", ".join(f'"{f.name}": "{f.type}"' for f in spec.outputs) + "}",
        "constants": "{" + ", ".join(f'"{f.name}": {_CONSTANT[f.type]}' for f in spec.outputs) + "}",
        "inputs_doc": _fields_doc(spec.inputs), "outputs_doc": _fields_doc(spec.outputs),
        "example": ", ".join(f'"{f.name}": {_EXAMPLE[f.type]}' for f in spec.inputs),
    }
    module = f"src/{spec.module}"
    files = {
        "pyproject.toml": templates.PYPROJECT, "README.md": templates.README,
        f"{module}/__init__.py": templates.INIT, f"{module}/documents.py": templates.DOCUMENTS,
        f"{module}/engine.py": templates.ENGINE, f"{module}/task.py": templates.TASK,
        f"{module}/py.typed": "", "tests/test_task.py": templates.TESTS,
    }
    return {path: Template(text).substitute(values) for path, text in files.items()}


def write_task(spec: TaskSpec, directory: Path, *, force: bool = False) -> list[Path]:
    """Write the package into ``directory`` (ConfigError when it holds files, unless ``force``)."""
    if directory.exists() and any(directory.iterdir()) and not force:
        raise ConfigError(f"{directory} is not empty; choose another directory (or --force to write over it)")
    written = []
    for relative, text in render_task(spec).items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written
