"""The base of every raybio config: strict pydantic models and the error they raise.

Each layer owns its configs (`raybio.data.config`, `raybio.models.config`, `raybio.config`
for training and the whole experiment); all of them build on `Strict`, so a misspelt field
or a bad value fails at load time with a message naming the field.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field and the fix."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)
