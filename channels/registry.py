"""Every channel Yujing has, by name: the `DECLARATION` of each module in channels/.

For code that must know a channel's facts whether or not this instance has it
configured: a stored outbox row, failover, a label on the console. The modules
are found, not listed, so adding a channel is its module (with its DECLARATION),
its settings and its construction in dispatcher/channelset.py (docs/channels.md).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from types import MappingProxyType

from channels.base import ChannelDeclaration, Medium

__all__ = ["DECLARATIONS", "declaration", "declarations_in", "medium_of"]


def declarations_in(package: str) -> Mapping[str, ChannelDeclaration]:
    """The `DECLARATION` of every module of `package` that has one, by channel name.

    Raises RuntimeError when two modules declare the same name.
    """
    found: dict[str, ChannelDeclaration] = {}
    declared_in: dict[str, str] = {}
    path = importlib.import_module(package).__path__
    for info in sorted(pkgutil.iter_modules(path), key=lambda m: m.name):
        module = importlib.import_module(f"{package}.{info.name}")
        declared = getattr(module, "DECLARATION", None)
        if not isinstance(declared, ChannelDeclaration):
            continue  # shared plumbing (base, http_result, …), not a channel
        if declared.name in found:
            # two modules claiming one name would make stored rows ambiguous
            raise RuntimeError(
                f"{package}.{info.name} declares channel {declared.name!r}, which "
                f"{declared_in[declared.name]} already declares: rename one"
            )
        found[declared.name] = declared
        declared_in[declared.name] = f"{package}.{info.name}"
    return MappingProxyType(found)


#: Channel name (as stored in outbox rows) → its declaration.
DECLARATIONS: Mapping[str, ChannelDeclaration] = declarations_in("channels")


def declaration(name: str) -> ChannelDeclaration | None:
    """The declaration of the channel called `name`; None for a name no module declares."""
    return DECLARATIONS.get(name)


def medium_of(name: str) -> Medium:
    """How a text for channel `name` is worded.

    A name no module declares (a row written by another release, a test's channel)
    gets what an SMS would say: the one text that is safe to show anywhere.
    """
    declared = DECLARATIONS.get(name)
    return declared.medium if declared is not None else Medium.SMS
