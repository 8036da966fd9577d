"""The ``weather`` source: made-up, deterministic readings for a city.

It needs no data store: every reading is a pure function of the city and the
moment, so the same window always gives the same rows and overlapping windows
agree on the readings they share.  Its settings (:class:`ExampleConfig`, the
``[plugins.example]`` table) choose the cities it offers and how many decimals
temperatures have.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Literal

import msgspec

from exportd import Batch, Column, ConfigError, NotFound, ReadContext, Source, Window

DAYS_PER_YEAR = 365.2425


@dataclass(frozen=True)
class Climate:
    """A city's made-up climate.

    ``yearly_swing_c`` is half the gap between the warmest and the coldest
    month; it is negative south of the equator, where January is summer.
    """

    name: str
    utc_offset_hours: float
    mean_c: float
    yearly_swing_c: float
    daily_swing_c: float
    humidity: int


CITIES = {
    "helsinki": Climate("Helsinki", 2, 6.0, 11.0, 3.5, 78),
    "lisbon": Climate("Lisbon", 0, 17.5, 6.0, 4.5, 70),
    "nairobi": Climate("Nairobi", 3, 19.0, 1.5, 6.0, 65),
    "reykjavik": Climate("Reykjavik", 0, 5.0, 6.0, 2.5, 80),
    "sydney": Climate("Sydney", 10, 18.5, -5.0, 4.0, 68),
    "tokyo": Climate("Tokyo", 9, 16.0, 10.0, 4.0, 68),
}


class ExampleConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """The plugin's settings: ``[plugins.example]`` in ``exportd.toml``, or
    ``EXPORTD_PLUGINS__EXAMPLE__KEY`` variables."""

    cities: list[str] = msgspec.field(default_factory=lambda: list(CITIES))
    """The cities the source offers (default: every one it knows); comma-separated in
    ``EXPORTD_PLUGINS__EXAMPLE__CITIES``."""

    decimals: Annotated[int, msgspec.Meta(ge=0, le=3)] = 1
    """Digits after the decimal point of a temperature."""

    def check(self) -> ExampleConfig:
        """These settings, if every city is one the source knows; else a
        :class:`~exportd.ConfigError` naming the entry."""
        for index, city in enumerate(self.cities):
            if city not in CITIES:
                raise ConfigError.field(
                    f"plugins.example.cities[{index}]",
                    f"unknown city {city!r}; known: {', '.join(CITIES)}",
                )
        return self


class WeatherParams(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Which city, how often a reading is taken, and in which unit."""

    city: str
    every_minutes: Annotated[int, msgspec.Meta(ge=1, le=1440)] = 60
    unit: Literal["celsius", "fahrenheit"] = "celsius"


class WeatherSource(Source[WeatherParams]):
    """One reading every ``every_minutes`` within the window, on the minute grid."""

    name = "weather"
    description = "made-up weather readings for a city (needs no data store)"
    Params = WeatherParams

    def __init__(self, config: ExampleConfig | None = None) -> None:
        self.config = (config or ExampleConfig()).check()

    def validate(self, params: WeatherParams, ctx: ReadContext) -> None:
        """Refuse a city this source does not offer, naming the parameter."""
        if params.city.lower() not in self.config.cities:
            known = ", ".join(self.config.cities)
            raise NotFound.field("params.city", f"unknown city {params.city!r}; known: {known}")

    def columns(self, params: WeatherParams, ctx: ReadContext) -> Sequence[Column]:
        """Time, city, temperature, humidity and conditions."""
        return [
            Column("time", "datetime"),
            Column("city"),
            Column("temperature", "float"),
            Column("humidity", "integer"),
            Column("conditions"),
        ]

    def estimate(self, params: WeatherParams, ctx: ReadContext) -> int:
        """Exactly the number of readings in the window."""
        return len(reading_times(ctx.window, params.every_minutes))

    def read(self, params: WeatherParams, ctx: ReadContext) -> Iterator[Batch]:
        """The readings in time order, ``ctx.batch_size`` at a time."""
        climate = CITIES[params.city.lower()]
        fahrenheit = params.unit == "fahrenheit"
        times = reading_times(ctx.window, params.every_minutes)
        if ctx.limit is not None:
            times = times[: ctx.limit]
        decimals = self.config.decimals
        for first in range(0, len(times), ctx.batch_size):
            chunk = times[first : first + ctx.batch_size]
            yield [reading(climate, moment, fahrenheit, decimals) for moment in chunk]


def reading_times(window: Window, every_minutes: int) -> range:
    """The reading times (Unix seconds) in ``[window.start, window.end)``."""
    step = every_minutes * 60
    first = math.ceil(window.start.timestamp() / step) * step
    return range(first, math.ceil(window.end.timestamp()), step)


def reading(
    climate: Climate, moment: int, fahrenheit: bool, decimals: int = 1
) -> tuple[object, ...]:
    """The reading at ``moment`` (Unix seconds): a season, a daily cycle and some noise,
    the temperature to ``decimals`` digits."""
    season = -math.cos(2 * math.pi * ((moment / 86400) % DAYS_PER_YEAR - 20) / DAYS_PER_YEAR)
    local_hour = (moment / 3600 + climate.utc_offset_hours) % 24
    day = -math.cos(2 * math.pi * (local_hour - 3) / 24)
    hour = moment // 3600 + zlib.crc32(climate.name.encode())
    celsius = (
        climate.mean_c
        + climate.yearly_swing_c * season
        + climate.daily_swing_c * day
        + 2.0 * noise(hour)
    )
    humidity = round(min(100, max(5, climate.humidity + 18 * noise(hour + 7919) - 6 * day)))
    if humidity >= 90:
        conditions = "snow" if celsius <= 0 else "rain"
    else:
        conditions = "cloudy" if humidity >= 75 else "clear"
    temperature = celsius * 9 / 5 + 32 if fahrenheit else celsius
    return (
        datetime.fromtimestamp(moment, UTC),
        climate.name,
        round(temperature, decimals),
        humidity,
        conditions,
    )


def noise(n: int) -> float:
    """A repeatable value in [-1, 1) for the integer ``n`` (a multiplicative hash)."""
    return ((n * 2654435761) % 2**32) / 2**31 - 1.0
