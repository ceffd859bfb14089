"""Run the weather example offline: a small server on 127.0.0.1 answers like Open-Meteo's
geocoding and forecast APIs (same paths, parameters and JSON shapes, made-up but steady
numbers), and the tree runs against it with `--set base_url=... --set geocoding_url=...`.

    python examples/weather/offline.py [more genarun run options, e.g. --seed 3]

`fixture_server()` is also what the tests start.
"""

from __future__ import annotations

import hashlib
import json
import sys
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # examples/offline_server.py, run as a script or loaded

from offline_server import run_offline, start_json_server  # noqa: E402

CITIES = {
    "lisbon": ("Lisbon", "Portugal", 38.71667, -9.13333),
    "oslo": ("Oslo", "Norway", 59.91273, 10.74609),
    "nairobi": ("Nairobi", "Kenya", -1.28333, 36.81667),
    "kyoto": ("Kyoto", "Japan", 35.02107, 135.75385),
    "montevideo": ("Montevideo", "Uruguay", -34.90328, -56.18816),
}


def _steady(*parts: Any) -> float:
    """A number in [0, 1) fixed by its inputs: the same question gets the same answer."""
    digest = hashlib.sha256(json.dumps(parts).encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32


def search(query: dict[str, list[str]]) -> tuple[int, Any]:
    name = (query.get("name") or [""])[0].strip().lower()
    if name not in CITIES:
        return 200, {"generationtime_ms": 0.2}  # Open-Meteo answers an unknown name this way
    city, country, lat, lon = CITIES[name]
    result = {"id": 1, "name": city, "latitude": lat, "longitude": lon, "country": country}
    return 200, {"results": [result], "generationtime_ms": 0.3}


def forecast(query: dict[str, list[str]]) -> tuple[int, Any]:
    try:
        lat = float(query["latitude"][0])
        lon = float(query["longitude"][0])
    except (KeyError, ValueError):
        return 400, {"error": True, "reason": "Parameter 'latitude' and 'longitude' are required"}
    fields = (query.get("current") or ["temperature_2m"])[0].split(",")
    made = {
        "temperature_2m": round(30 - abs(lat) * 0.5 + 8 * _steady(lat, lon, "t"), 1),
        "wind_speed_10m": round(40 * _steady(lat, lon, "w"), 1),
        "weather_code": int(4 * _steady(lat, lon, "c")),
    }
    units = {"temperature_2m": "°C", "wind_speed_10m": "km/h", "weather_code": "wmo code"}
    current = {"time": "2026-12-06T12:00", "interval": 900}
    current.update({f: made[f] for f in fields if f in made})
    return 200, {
        "latitude": lat,
        "longitude": lon,
        "timezone": "GMT",
        "current_units": {"time": "iso8601", "interval": "seconds"}
        | {f: units[f] for f in fields if f in units},
        "current": current,
    }


ROUTES = {"/v1/search": search, "/v1/forecast": forecast}


def answer(path: str, query: dict[str, list[str]]) -> tuple[int, Any]:
    route = ROUTES.get(path)
    if route is None:
        return 404, {"error": True, "reason": f"no route {path}"}
    return route(query)


def fixture_server() -> ThreadingHTTPServer:
    """A started server on a free port of 127.0.0.1 (stop it with .shutdown())."""
    return start_json_server(answer)


def main(argv: list[str]) -> int:
    tree = HERE / "tree.yaml"
    url_vars = ["base_url", "geocoding_url"]
    return run_offline(fixture_server(), tree, url_vars, "Open-Meteo", argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
