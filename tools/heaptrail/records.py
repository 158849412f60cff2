"""Plain record classes: fields from the class annotations, an __init__,
__eq__ and __repr__, and for frozen records __hash__ and no assignment.

The standard dataclasses module would do, but importing it pulls in inspect
(and with it ast, dis, tokenize): about 7 ms of every `heaptrail report`
start, more than the report itself spends after the engine. Records here
need no more than the above: no field(), no default factories (a default is
a class attribute shared by every instance, so it must not be mutable)."""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs start-up and annotations are never evaluated
if TYPE_CHECKING:
    from typing import Any, Callable, TypeVar

    T = TypeVar("T")


def _fields(cls: type) -> tuple[tuple[str, ...], dict[str, Any]]:
    names = tuple(cls.__dict__.get("__annotations__", {}))
    defaults = {name: cls.__dict__[name] for name in names if name in cls.__dict__}
    seen_default = False
    for name in names:
        if name in defaults:
            seen_default = True
        elif seen_default:
            raise TypeError(f"{cls.__name__}: field {name} without a default follows one with a default")
    return names, defaults


def record(frozen: bool = False) -> Callable[[type[T]], type[T]]:
    """Class decorator: @record() or @record(frozen=True)."""

    def wrap(cls: type[T]) -> type[T]:
        names, defaults = _fields(cls)
        name_set = frozenset(names)
        cls_name = cls.__name__

        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            if len(args) > len(names):
                raise TypeError(f"{cls_name}() takes {len(names)} arguments, {len(args)} given")
            values = dict(zip(names, args))
            for key, value in kwargs.items():
                if key not in name_set or key in values:
                    raise TypeError(f"{cls_name}(): unexpected or repeated argument {key}")
                values[key] = value
            for name in names:
                if name in values:
                    object.__setattr__(self, name, values[name])
                elif name in defaults:
                    object.__setattr__(self, name, defaults[name])
                else:
                    raise TypeError(f"{cls_name}(): missing argument {name}")

        def _values(self: Any) -> tuple[Any, ...]:
            return tuple(getattr(self, name) for name in names)

        def __eq__(self: Any, other: object) -> bool:
            if other.__class__ is not self.__class__:
                return NotImplemented
            return bool(_values(self) == _values(other))

        def __repr__(self: Any) -> str:
            inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in names)
            return f"{cls_name}({inner})"

        setattr(cls, "__init__", __init__)
        setattr(cls, "__eq__", __eq__)
        setattr(cls, "__repr__", __repr__)
        if frozen:

            def __hash__(self: Any) -> int:
                return hash(_values(self))

            def __setattr__(self: Any, name: str, value: Any) -> None:
                raise AttributeError(f"{cls_name} is frozen: cannot assign {name}")

            def __delattr__(self: Any, name: str) -> None:
                raise AttributeError(f"{cls_name} is frozen: cannot delete {name}")

            setattr(cls, "__hash__", __hash__)
            setattr(cls, "__setattr__", __setattr__)
            setattr(cls, "__delattr__", __delattr__)
        else:
            setattr(cls, "__hash__", None)  # mutable and comparable: unhashable, as dataclasses does
        return cls

    return wrap
