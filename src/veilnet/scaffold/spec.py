"""What a new task is: its inputs and outputs (named, typed fields) and how answers are verified.

``veilnet new-task NAME`` asks for these interactively, or reads them from ``--spec FILE`` (TOML or JSON)::

    description = "Sentiment of a product review"
    verification = "known_truth"          # or "reference", or "similarity"
    inputs = [{name = "text", type = "string"}]
    outputs = [{name = "label", type = "string"}, {name = "score", type = "number"}]

- ``known_truth``: the validator builds each challenge from an answer it chose, so it knows the answer.
- ``reference``: the validator re-runs a reference engine on the same request and wants the same answer.
- ``similarity``: as ``reference``, but answers score by how close they come (text edit distance, relative
  numeric distance) and fail only below a threshold.
"""

from __future__ import annotations

import json
import keyword
import re
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from veilnet.errors import ConfigError

__all__ = ["FIELD_TYPES", "VERIFICATIONS", "Field", "FieldType", "TaskSpec", "Verification", "check_task_name",
           "load_spec", "parse_fields"]

FieldType = Literal["string", "integer", "number", "boolean"]
Verification = Literal["known_truth", "reference", "similarity"]
FIELD_TYPES: tuple[FieldType, ...] = ("string", "integer", "number", "boolean")
VERIFICATIONS: tuple[Verification, ...] = ("known_truth", "reference", "similarity")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_TASK_NAME = re.compile(r"^[a-z][a-z0-9-]{0,39}$")
_RESERVED = {"model", "id", "object", "created", "usage", "user"}


class Field(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    type: FieldType = "string"

    @field_validator("name")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not _NAME.match(value) or keyword.iskeyword(value):
            raise ValueError(f"field name {value!r} must be a lower-case Python identifier (a-z, 0-9, _)")
        if value in _RESERVED:
            raise ValueError(f"field name {value!r} is taken by the documents themselves ({', '.join(sorted(_RESERVED))})")
        return value


class TaskSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    description: str = ""
    inputs: tuple[Field, ...]
    outputs: tuple[Field, ...]
    verification: Verification = "known_truth"

    @field_validator("name")
    @classmethod
    def _task_name(cls, value: str) -> str:
        if not _TASK_NAME.match(value):
            raise ValueError(_name_problem(value))
        return value

    @model_validator(mode="after")
    def _fields(self) -> TaskSpec:
        if not self.inputs or not self.outputs:
            raise ValueError("a task needs at least one input and one output")
        for side, fields in (("inputs", self.inputs), ("outputs", self.outputs)):
            names = [f.name for f in fields]
            if len(set(names)) != len(names):
                raise ValueError(f"{side} name a field twice")
        return self

    @property
    def module(self) -> str:
        """The package's import name: ``veilnet_task_<name>``."""
        return "veilnet_task_" + self.name.replace("-", "_")

    @property
    def distribution(self) -> str:
        return "veilnet-task-" + self.name

    @property
    def class_prefix(self) -> str:
        return "".join(part.capitalize() for part in re.split(r"[-_]", self.name))


def _name_problem(name: str) -> str:
    return f"task name {name!r} must be lower case: a-z, 0-9 and '-', starting with a letter, at most 40"


def check_task_name(name: str) -> None:
    """ConfigError unless ``name`` can name a task (its entry point, package and route)."""
    if not _TASK_NAME.match(name):
        raise ConfigError(_name_problem(name))


def parse_fields(text: str) -> tuple[Field, ...]:
    """``"text:string, score:number"`` (a type left out is string) as fields; ConfigError naming a bad one."""
    fields = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, _, kind = item.partition(":")
        try:
            fields.append(Field(name=name.strip(), type=kind.strip() or "string"))  # type: ignore[arg-type]
        except ValidationError as exc:
            raise ConfigError(f"{item!r}: {exc.errors()[0]['msg']} (types: {', '.join(FIELD_TYPES)})") from None
    return tuple(fields)


def load_spec(path: Path, name: str) -> TaskSpec:
    """The spec in ``path`` (TOML or JSON by its suffix) for task ``name`` (the command's NAME wins over a
    ``name`` in the file); ConfigError naming what is wrong."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read the spec {path}: {exc.strerror}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"the spec {path} is not valid {'JSON' if path.suffix == '.json' else 'TOML'}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"the spec {path} must be a table/object")
    try:
        return TaskSpec.model_validate({**data, "name": name})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "spec"
        raise ConfigError(f"the spec {path}: {where}: {first['msg']}") from None
