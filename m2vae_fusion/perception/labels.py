"""The 8 object classes of the paper's tri-modal data set: colour x shape x surface (Sec. IV)."""

from __future__ import annotations

from dataclasses import dataclass

COLOURS = ("red", "green")
SHAPES = ("cylinder", "cube")
SURFACES = ("matte", "shiny")
CLASSES = tuple(f"{c}_{s}_{f}" for c in COLOURS for s in SHAPES for f in SURFACES)


@dataclass(frozen=True)
class ObjectClass:
    colour: str
    shape: str
    surface: str

    @property
    def label(self) -> str:
        return f"{self.colour}_{self.shape}_{self.surface}"

    @property
    def class_id(self) -> int:
        return CLASSES.index(self.label)


def parse_class(model_name: str) -> ObjectClass | None:
    """The class of a primitive from its model name `<colour>_<shape>_<surface>`; None for scenery."""
    parts = model_name.split("_")
    if len(parts) != 3 or parts[0] not in COLOURS or parts[1] not in SHAPES or parts[2] not in SURFACES:
        return None
    return ObjectClass(*parts)
