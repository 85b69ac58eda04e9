"""What the web app reads of a coordinator's configuration file: the community id, its broker,
its ledger and its households' ids. The rest is the coordinator's (``gridctl coordinator run
--check`` validates it all); its model imports the planner, seconds the web need not wait."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from gridctl.core import FilePath, GridctlError, read_yaml, validated
from gridctl.protocol import NAME
from gridctl.transport.session import BrokerConfig


class _Household(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str = Field(pattern=NAME.pattern)


class WebSide(BaseModel):
    """The fields of a coordinator config the web app uses (others are left to it)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    community: str = Field(pattern=NAME.pattern)
    broker: BrokerConfig
    ledger: FilePath
    households: list[_Household] = Field(default_factory=list, max_length=100_000)


def load_web_side(path: Path) -> WebSide:
    """Read the web's fields of a coordinator YAML; relative paths are taken from its folder.
    GridctlError naming the file and field if one is missing or invalid."""
    cfg = validated(WebSide, read_yaml(path, GridctlError), GridctlError, path.name)
    base = path.parent
    return cfg.model_copy(update={"ledger": base / cfg.ledger,
                                  "broker": cfg.broker.relative_to(base)})  # fmt: skip
