"""Request and response bodies of the datasets API."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_serializer,
    field_validator,
)
from pydantic_core import PydanticCustomError

from service.datasets.files import name_problem
from service.kit.time import as_utc
from service.training.spec import WHOLE

Task = Literal["classification", "regression"]


def _check_name(name: str) -> str:
    problem = name_problem(name)
    if problem:
        raise PydanticCustomError("invalid_name", problem)
    return name


DatasetName = Annotated[
    str, Field(description="1-64 characters of a-z, 0-9, '_' and '-'"), AfterValidator(_check_name)
]


class GeneratorIn(BaseModel):
    """`POST /v1/datasets` with a JSON body: a seeded synthetic dataset. Strict, as the specs
    (service/training/spec.py `Strict`): no "5" or true for a number."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: DatasetName
    generator: Task
    n_samples: Annotated[int, Field(ge=10, le=200_000), WHOLE] = 1000
    n_features: Annotated[int, Field(ge=1, le=1000), WHOLE] = 20
    n_classes: Annotated[int, Field(ge=2, le=100), WHOLE] | None = Field(
        default=None, description="classification only; default 2"
    )
    noise: float = Field(
        default=0.1,
        ge=0,
        # Regression: far beyond any signal already (the target is standardized afterwards), and
        # below where the noise itself overflows the float64 target (1e308 did).
        le=1e6,
        allow_inf_nan=False,
        description="classification: fraction of labels assigned at random (0..1); "
        "regression: standard deviation of the Gaussian noise on the target (at most 1e6)",
    )
    seed: Annotated[int, Field(ge=0, le=2**32 - 1), WHOLE] = 0

    @property
    def classes(self) -> int:
        return self.n_classes or 2


class UploadForm(BaseModel):
    """The non-file fields of a multipart upload."""

    model_config = ConfigDict(extra="forbid")

    name: DatasetName
    label_column: str | None = Field(default=None, max_length=200)
    task: Task | None = None

    @field_validator("label_column", "task", mode="before")
    @classmethod
    def _blank_is_none(cls, v: Any) -> Any:
        return None if v == "" else v


@dataclass(frozen=True)
class Upload:
    """A received upload: its form fields and the file, copied to `path` (the caller removes it)."""

    form: UploadForm
    filename: str
    path: Path
    size: int
    sha256: str


class DatasetOut(BaseModel):
    name: str
    task: Task
    n_samples: int
    feature_shape: list[int]
    n_classes: int | None
    image_shape: list[int] | None = Field(
        description="(C, H, W) when the `cnn` model can read it; null for tabular data"
    )
    builtin: bool
    description: str
    source: dict[str, Any] | None
    created_at: datetime | None

    @field_serializer("created_at")
    def _utc(self, dt: datetime | None) -> datetime | None:
        return as_utc(dt)


class DatasetList(BaseModel):
    datasets: list[DatasetOut]
