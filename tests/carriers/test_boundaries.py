"""The carrier package's borders: carrier codes and status names live only inside it, and
production code never imports the simulator (a development tool)."""
from __future__ import annotations

import pathlib
import re
import subprocess
import sys

from server.carriers import CARRIERS

ROOT = pathlib.Path(__file__).resolve().parents[2]
PRODUCTION = ("server", "handlers", "workers", "db")


def carrier_words() -> set[str]:
    """Every error code a carrier module knows, and its status names that are not ours
    (the ones with an underscore, plus Twilio's "undelivered")."""
    words: set[str] = set()
    for module in CARRIERS.values():
        for name, value in vars(module).items():
            if name.endswith("_CODES") and isinstance(value, frozenset):
                words.update(value)
        words.update(s for s in vars(module)["STATUS_MAP"] if "_" in s or s == "undelivered")
    return words


def test_carrier_codes_and_statuses_stay_in_the_carrier_package() -> None:
    words = carrier_words()
    assert {"40300", "40008", "21610", "30003", "delivery_failed", "undelivered"} <= words
    pattern = re.compile(r"\b(" + "|".join(sorted(map(re.escape, words))) + r")\b")
    found = [f"{path.relative_to(ROOT)}:{number}: {match.group(0)}"
             for top in PRODUCTION for path in sorted((ROOT / top).rglob("*.py"))
             if "carriers" not in path.relative_to(ROOT).parts[:2]
             and "migrations" not in path.parts
             for number, line in enumerate(path.read_text().splitlines(), 1)
             for match in [pattern.search(line)] if match]
    assert found == []


def test_production_entry_points_never_import_the_simulator() -> None:
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, server.app, server.main, server.cli, workers; "
         "print(sorted(m for m in sys.modules if 'simulator' in m))"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    assert loaded.stdout.strip() == "[]"
