"""The action space a policy answers in: its output format and the resize bounds of its image.

One :class:`ActionSpaceConfig` drives a policy's prompt (the format it is told to write, the resolution
it is told it sees), the parser of its answers, the patches written for it and the evaluators that
score it, so none of them can disagree about a format or a coordinate frame.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from guiagent.actions.coords import ModelGeometry, check_resize_bounds, model_geometry
from guiagent.config import StrictModel


class ActionSpaceConfig(StrictModel):
    """How actions are written by the model and mapped to the device."""

    format: Literal["qwen25vl_mobile", "qwen25vl_computer", "qwen3vl_mobile", "qwen3vl_computer", "uis1"] = Field(
        "qwen25vl_mobile", description="Model output format the policy writes and the parser reads."
    )
    min_pixels: int = Field(
        3136, ge=784, description="smart_resize lower bound on the model image's pixel count (Qwen2.5-VL default 56*56)."
    )
    max_pixels: int = Field(
        12845056, ge=784, description="smart_resize upper bound on the model image's pixel count (Qwen2.5-VL default 28*28*16384)."
    )
    factor: int = Field(28, ge=1, description="smart_resize patch multiple: 28 for Qwen2.5-VL, 32 for Qwen3-VL.")

    @model_validator(mode="after")
    def _bounds_fit(self) -> ActionSpaceConfig:
        check_resize_bounds(self.factor, self.min_pixels, self.max_pixels)  # here, not at the first screenshot
        return self

    def geometry(self, width: int, height: int) -> ModelGeometry:
        """The :class:`~guiagent.actions.coords.ModelGeometry` of a ``width`` x ``height`` screenshot under
        these bounds.

        The one resize rule for a policy's prompt (the image it sees, the resolution it is told) and for the
        parser of its answers.
        """
        return model_geometry(
            width, height, factor=self.factor, min_pixels=self.min_pixels, max_pixels=self.max_pixels
        )


__all__ = ["ActionSpaceConfig"]
