"""Configuration errors: every problem carries the dotted path of the field it is about."""

from __future__ import annotations

from dataclasses import dataclass, field


class ConfigError(ValueError):
    """One or more problems in a configuration; ``str()`` lists them one per line, each as
    ``path: reason`` (e.g. ``connections.site-b.children.net.esp_proposals[1]: ...``)."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(f"{p}: {r}" if p else r for p, r in self.problems))


class Invalid(ValueError):
    """Raised by value converters with the reason (never the offending secret value)."""


class _Invalid:
    """Marker returned by converters whose problems were recorded in the context."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "INVALID"


INVALID = _Invalid()


@dataclass(slots=True)
class Context:
    """Collects problems while a configuration is parsed."""

    base_dir: str | None = None
    settings: dict[str, object] = field(default_factory=dict)  # parsed agent section
    problems: list[tuple[str, str]] = field(default_factory=list)

    def error(self, path: str, reason: str) -> _Invalid:
        self.problems.append((path, reason))
        return INVALID

    def raise_if_any(self) -> None:
        if self.problems:
            raise ConfigError(self.problems)


def join(path: str, key: str | int) -> str:
    """Extend a dotted path with a mapping key or a list index."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key
