"""The label space of a perception model: its classes, in the order of the classifier's outputs, and
optionally attributes (e.g. colour, shape, surface) that each class takes one value of.

Labels are data. A model stores its label space in its manifest (model/perception_model.py) and the
fusion node, viz and scoreboard read class names and attribute marginals from there; `m2vae train
--labels FILE` trains on any set of classes. The paper's eight AMiRo classes (colour x shape x surface,
Sec. IV) are one such space, in config/labels.yaml; it is the default for training and the space of
models whose manifest predates stored labels.

YAML (a label file for `m2vae train --labels`, see docs/own-robot.md):

    classes:                      # class -> its attribute values; {} or null for no attributes
      mug:  {material: ceramic, form: round}
      box:  {material: cardboard, form: square}
    relabel:                      # optional: a label in the bag's ground truth -> a class above
      red_cylinder_matte: mug
    objects:                      # optional: labelled object positions for a bag without ground truth
      - {name: mug_1, label: mug, x: 1.2, y: -0.35}

Either every class names a value for every attribute, or no class has attributes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from m2vae_fusion.core.errors import ConfigError
from m2vae_fusion.resources import config_path


@dataclass(frozen=True)
class LabelSpace:
    """Classes in classifier order and, per class, one value of each attribute."""

    classes: tuple[str, ...]
    attributes: tuple[tuple[str, tuple[str, ...]], ...]  # (name, its values in first-seen order)
    values: tuple[tuple[str, ...], ...]  # per class, its value of each attribute in `attributes` order

    @classmethod
    def from_dict(cls, classes: Mapping[str, Any], where: str = "labels") -> LabelSpace:
        """From {class: {attribute: value}} (values may be None/{} for a space without attributes)."""
        if not isinstance(classes, Mapping) or len(classes) < 2:
            raise ConfigError(f"{where}: 'classes' must map at least two class names to their attributes")
        names = tuple(str(name) for name in classes)
        per_class = {str(name): dict(attrs or {}) for name, attrs in classes.items()}
        for name, attrs in per_class.items():
            if not name.strip():
                raise ConfigError(f"{where}: a class name is empty")
            if not all(isinstance(v, (str, int, float, bool)) for v in attrs.values()):
                raise ConfigError(f"{where}: class {name!r}: attribute values must be plain strings, got {attrs}")
        keys = list(per_class[names[0]])
        for name, attrs in per_class.items():
            if list(attrs) != keys and set(attrs) != set(keys):
                raise ConfigError(
                    f"{where}: class {name!r} has attributes {sorted(attrs)}, class {names[0]!r} has {sorted(keys)}: "
                    "every class needs a value for every attribute (or no class has attributes)"
                )
        attributes = []
        for key in keys:
            seen: list[str] = []
            for name in names:
                value = str(per_class[name][key])
                if value not in seen:
                    seen.append(value)
            attributes.append((str(key), tuple(seen)))
        values = tuple(tuple(str(per_class[name][key]) for key in keys) for name in names)
        return cls(names, tuple(attributes), values)

    @classmethod
    def load(cls, path: Path | str) -> LabelSpace:
        """The `classes` of a label YAML file."""
        return cls.from_dict(read_label_file(path).get("classes"), str(path))

    def to_dict(self) -> dict[str, dict[str, str]]:
        """{class: {attribute: value}}, the form from_dict reads and the manifest stores."""
        keys = [name for name, _ in self.attributes]
        return {name: dict(zip(keys, values, strict=True)) for name, values in zip(self.classes, self.values, strict=True)}

    def index(self, label: str) -> int:
        """The class id of a label; a ConfigError naming the known classes for any other."""
        try:
            return self.classes.index(label)
        except ValueError:
            raise ConfigError(f"label {label!r} is not one of the classes {', '.join(self.classes)}") from None

    def attribute_values(self, label: str) -> dict[str, str]:
        """{attribute: value} of one class."""
        return dict(zip((name for name, _ in self.attributes), self.values[self.index(label)], strict=True))

    def marginals(self, class_probabilities: np.ndarray) -> dict[str, np.ndarray]:
        """p(attribute = value) for each attribute (values in `attributes` order) from p(class)."""
        p = np.asarray(class_probabilities, dtype=float)
        if p.shape != (len(self.classes),):
            raise ValueError(f"class probabilities must have shape ({len(self.classes)},), got {p.shape}")
        return {name: self._indicators[name] @ p for name, _ in self.attributes}

    @property
    def _indicators(self) -> dict[str, np.ndarray]:
        # (values, classes) with 1 where the class has the value; cached per space since the fusion
        # node computes marginals for every object twice a second
        return _indicator_matrices(self)


@cache
def _indicator_matrices(space: LabelSpace) -> dict[str, np.ndarray]:
    return {
        name: np.array([[float(v[column] == value) for v in space.values] for value in values])
        for column, (name, values) in enumerate(space.attributes)
    }


def read_label_file(path: Path | str) -> dict[str, Any]:
    """A label YAML file as a dict; a ConfigError naming the file when it cannot be read."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read labels {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with 'classes' (and optionally 'relabel', 'objects')")
    return data


@cache
def default_labels() -> LabelSpace:
    """The paper's eight AMiRo classes (config/labels.yaml)."""
    return LabelSpace.load(config_path("labels.yaml"))


@dataclass(frozen=True)
class Labelling:
    """How the objects of a bag get class ids: a label space and a relabelling of the labels the bag's
    ground truth (or a label file's objects) uses. A label relabelled to None leaves the object unlabelled."""

    space: LabelSpace
    relabel: tuple[tuple[str, str | None], ...] = ()

    def class_id(self, label: str) -> int:
        """The class id of an object's label; -1 for a label relabelled to None."""
        mapping = dict(self.relabel)
        if label in mapping:
            return -1 if mapping[label] is None else self.space.index(str(mapping[label]))
        if label in self.space.classes:
            return self.space.index(label)
        raise ConfigError(
            f"label {label!r} of the data is neither one of the classes ({', '.join(self.space.classes)}) nor relabelled: "
            "add it under 'relabel' in the label file (map it to null to leave such objects unlabelled)"
        )

    def to_dict(self) -> dict[str, Any]:
        return {"classes": self.space.to_dict(), "relabel": dict(self.relabel)}


def read_labelling(path: Path | str) -> tuple[Labelling, list[Any] | None]:
    """A label file (the YAML above) as its labelling and its raw `objects` entries (None without)."""
    data = read_label_file(path)
    if not {"classes", "objects"} & set(data):
        raise ConfigError(f"{path}: a label file needs 'classes' (your label space) or 'objects' (labelled positions), or both")
    space = LabelSpace.from_dict(data["classes"], str(path)) if "classes" in data else default_labels()
    relabel = data.get("relabel") or {}
    if not isinstance(relabel, dict):
        raise ConfigError(f"{path}: 'relabel' must map labels of the data to classes (or null)")
    for source, target in relabel.items():
        if target is not None and str(target) not in space.classes:
            raise ConfigError(
                f"{path}: relabel {source!r} -> {target!r}: {target!r} is not one of the classes {', '.join(space.classes)}"
            )
    pairs = tuple((str(k), None if v is None else str(v)) for k, v in relabel.items())
    return Labelling(space, pairs), data.get("objects")
