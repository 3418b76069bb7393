"""How sizes and times read in every front end: the commands, the widget and the REST API.

One home, so that ``%volume ls``, ``jupyter volume ls``, the ``VolumeBrowser`` and the
server's JSON show a size or a time the same way.

Layer: a leaf; imports nothing from the package.
"""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["as_datetime", "human_size", "iso_time", "local_time"]

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def human_size(n: int | None) -> str:
    """Bytes as a short size with about three significant digits.

    ``0 B``, ``1023 B``, ``1.5 KiB``, ``10 KiB``, ``5.0 MiB``; None gives ``""`` (an
    empty table cell).
    """
    if n is None:
        return ""
    size = float(n)
    for unit in _UNITS:
        if abs(size) < 1024 or unit == _UNITS[-1]:
            if unit == "B":
                return f"{int(size)} B"
            return f"{size:.1f} {unit}" if abs(size) < 10 else f"{size:.0f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")  # the last unit always returns


def as_datetime(t: datetime | int | float) -> datetime:
    """A datetime as is; seconds since the epoch as an aware datetime in UTC."""
    return t if isinstance(t, datetime) else datetime.fromtimestamp(t, tz=UTC)


def local_time(t: datetime | int | float | None, *, seconds: bool = True) -> str:
    """A timestamp in the local time zone: ``2026-05-01 14:03:59`` (without the seconds
    when ``seconds`` is false, as a file listing shows modification times); None gives
    ``""``."""
    if t is None:
        return ""
    return (
        as_datetime(t).astimezone().strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")
    )


def iso_time(t: datetime | int | float | None) -> str | None:
    """A timestamp as ISO 8601 in UTC (``2026-05-01T12:03:59+00:00``), for JSON."""
    if t is None:
        return None
    return as_datetime(t).astimezone(UTC).isoformat()
