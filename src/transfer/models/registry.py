"""The model registry: `@register("name")` on a BlockModel class, `create_model(name, **config)` to build one.

Each model declares its model-specific constructor options (`options`: everything but the common width,
input_kind and norm) with a type and a help line; the command line makes its flags from them
(`--depth`, `--backbone-weights`, ...), so an option is declared once, next to the network that takes it.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

from torch import nn

from transfer.errors import TransferError
from transfer.models.base import BlockModel

COMMON_OPTIONS: tuple[str, ...] = ("width", "input_kind", "norm")  # every model takes them; options of their own
MODEL_REGISTRY: dict[str, type[BlockModel]] = {}
ModelClass = TypeVar("ModelClass", bound=type)


@dataclass(frozen=True)
class ModelOption:
    """A model-specific constructor option: its name, the type the command line parses, a help line."""

    name: str
    type: type
    help: str

    @property
    def flag(self) -> str:
        """The command-line flag: --name with dashes."""
        return "--" + self.name.replace("_", "-")


def register(name: str) -> Callable[[ModelClass], ModelClass]:
    """Class decorator: add a BlockModel to the registry as `name` (its `model_name`). Its declared `options`
    must be exactly its constructor's parameters other than COMMON_OPTIONS."""
    def add(cls: ModelClass) -> ModelClass:
        if name in MODEL_REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        declared = [option.name for option in getattr(cls, "options", ())]
        specific = [p for p in _parameters(cls) if p not in COMMON_OPTIONS]
        if sorted(declared) != sorted(specific):
            raise ValueError(f"model {name!r} declares options {declared} but its constructor takes {specific}")
        cls.model_name = name
        MODEL_REGISTRY[name] = cls
        return cls
    return add


def _parameters(cls: type) -> list[str]:
    """Keyword parameters of a class's constructor."""
    return [p for p in inspect.signature(cls).parameters if p != "self"]


def list_models() -> list[str]:
    """Names accepted by create_model, sorted."""
    return sorted(MODEL_REGISTRY)


def check_model_name(name: str) -> None:
    """An unknown model name is a TransferError listing the registered ones."""
    if name not in MODEL_REGISTRY:
        raise TransferError(f"unknown model {name!r}; known models: {', '.join(list_models())}")


def model_options(name: str) -> list[str]:
    """The keyword options a registered model's constructor accepts."""
    check_model_name(name)
    return _parameters(MODEL_REGISTRY[name])


def declared_options(name: str) -> tuple[ModelOption, ...]:
    """A registered model's model-specific options (those the command line sets)."""
    check_model_name(name)
    return tuple(getattr(MODEL_REGISTRY[name], "options", ()))


def all_declared_options() -> dict[str, tuple[ModelOption, list[str]]]:
    """Every model-specific option of the registered models: name -> (option, the models that take it). Models
    that share an option name must declare it alike."""
    found: dict[str, tuple[ModelOption, list[str]]] = {}
    for model in list_models():
        for option in declared_options(model):
            if option.name in found and found[option.name][0] != option:
                raise ValueError(f"option {option.name!r} is declared differently by {found[option.name][1]} "
                                 f"and {model}")
            found.setdefault(option.name, (option, []))[1].append(model)
    return found


def option_flag(name: str) -> str:
    """The command-line flag of a model-specific option (the bare name when no model declares it)."""
    declared = all_declared_options().get(name)
    return declared[0].flag if declared else name


def registered_name(model: nn.Module) -> str:
    """The registry name of a model (or of the model inside a DistributedDataParallel wrapper)."""
    model = getattr(model, "module", model)
    for name, factory in MODEL_REGISTRY.items():
        if type(model) is factory:
            return name
    raise TransferError(f"{type(model).__name__} is not a registered model; known models: "
                        f"{', '.join(list_models())}")


def takes_alpha(model: nn.Module) -> bool:
    """True when the model's forward takes an `alpha` (also through a DistributedDataParallel wrapper)."""
    return bool(getattr(getattr(model, "module", model), "takes_alpha", False))


def alpha_models() -> list[str]:
    """Names of the registered models whose forward takes an alpha."""
    return [name for name in list_models() if getattr(MODEL_REGISTRY[name], "takes_alpha", False)]


def create_model(name: str, **config: Any) -> BlockModel:
    """Build a registered model by name; an unknown name or option is a TransferError listing what exists."""
    check_model_name(name)
    unknown = sorted(set(config) - set(model_options(name)))
    if unknown:
        raise TransferError(f"bad option for model {name!r}: {', '.join(unknown)}; options: "
                            f"{', '.join(model_options(name))}")
    return MODEL_REGISTRY[name](**config)
