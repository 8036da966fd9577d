"""Parse a request's interval and time zone into a :class:`~exportd.Window`."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from exportd.errors import FieldError, InvalidRequest
from exportd.messages import Interval
from exportd.plugins.api import Window


def parse_timezone(name: str, field: str = "timezone") -> ZoneInfo:
    """The IANA zone called ``name``, or an error naming ``field``."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # OSError: a name like "Europe" is a folder of the zone database, not a zone.
        raise InvalidRequest.field(field, f"unknown IANA time zone {name!r}") from None


def parse_time(text: str, zone: ZoneInfo, field: str) -> datetime:
    """An ISO 8601 time as aware UTC; without an offset it is read in ``zone``.

    A local time that a daylight-saving change skips does not exist and is an
    error; one that it repeats means its first occurrence.
    """
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidRequest.field(
            field, f"{text!r} is not an ISO 8601 date or date-time"
        ) from None
    try:
        if moment.tzinfo is not None:
            return moment.astimezone(UTC)
        utc = moment.replace(tzinfo=zone).astimezone(UTC)
        if utc.astimezone(zone).replace(tzinfo=None) != moment:
            raise InvalidRequest.field(
                field, f"{text} does not exist in {zone.key}: a daylight-saving change skips it"
            )
        return utc
    except OverflowError:
        raise InvalidRequest.field(field, f"{text!r} is out of the supported range") from None


def parse_window(interval: Interval, timezone: str, prefix: str = "") -> Window:
    """Check and convert the interval; every problem found is reported at once."""
    errors: list[FieldError] = []
    try:
        zone = parse_timezone(timezone, f"{prefix}timezone")
    except InvalidRequest as exc:
        errors += exc.fields
        zone = ZoneInfo("UTC")
    ends: list[datetime] = []
    for name, text in (("start", interval.start), ("end", interval.end)):
        try:
            ends.append(parse_time(text, zone, f"{prefix}interval.{name}"))
        except InvalidRequest as exc:
            errors += exc.fields
    if len(ends) == 2 and ends[1] <= ends[0]:
        errors.append(FieldError(f"{prefix}interval.end", "must be after interval.start"))
    if errors:
        raise InvalidRequest("invalid interval", errors)
    return Window(start=ends[0], end=ends[1], timezone=zone)
