"""The fleet's live progress at a terminal: one bar per protocol and bar, counting the devices the fleet
reports in each state, and the final summary as tables."""

from __future__ import annotations

import io
from collections import Counter

from rich.console import Console

from device_emulator.live_progress import LiveProgress, bar_counts, rich_summary
from device_emulator.results import DeviceResult


def _console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=True, width=120, color_system=None), out


def test_bars_count_the_devices_of_each_protocol_by_state() -> None:
    counts = Counter({("LWM2M", "starting"): 1, ("LWM2M", "idle"): 2, ("LWM2M", "downloading"): 3,
                      ("LWM2M", "updating"): 1, ("LWM2M", "updated"): 4, ("LWM2M", "failed"): 1,
                      ("HTTP", "updated"): 5})
    assert bar_counts("LWM2M", counts) == {"registered": 11, "downloading": 4, "updated": 4, "failed": 1}
    assert bar_counts("HTTP", counts) == {"registered": 5, "downloading": 0, "updated": 5, "failed": 0}


def test_live_progress_moves_its_bars_and_draws_them() -> None:
    console, out = _console()
    with LiveProgress({"LWM2M": 4, "HTTP": 2, "OMADM": 0}, console) as live:
        live(1.0, Counter({("LWM2M", "idle"): 3, ("LWM2M", "starting"): 1, ("HTTP", "starting"): 2}))
        live(2.0, Counter({("LWM2M", "updated"): 3, ("LWM2M", "failed"): 1, ("HTTP", "downloading"): 2}))
    assert [live.done("LWM2M", bar) for bar in ("registered", "downloading", "updated", "failed")] == [4, 0, 3, 1]
    assert [live.done("HTTP", bar) for bar in ("registered", "downloading", "updated", "failed")] == [2, 2, 0, 0]
    text = out.getvalue()
    assert "LWM2M  updated" in text and "3/4" in text and "HTTP   downloading" in text and "2/2" in text
    assert "OMADM" not in text   # no devices of it: no bars


def _device(protocol: str, state: str, fault: str = "none", flashes: int = 0) -> DeviceResult:
    return DeviceResult(device_id=f"{protocol}-{state}-{fault}-{flashes}", protocol=protocol, cell="c", make="m",
                        model="x", fault=fault, start_version="1.0.0", final_version="2.0.0", final_state=state,
                        result_code=None, flashes=flashes)


def test_rich_summary_tables_hold_the_final_states_and_flashes() -> None:
    devices = [_device("LWM2M", "updated", flashes=1), _device("LWM2M", "failed", "update-failure"),
               _device("HTTP", "updated", flashes=1)]
    console, out = _console()
    for table in rich_summary(devices):
        console.print(table)
    rows = [line for line in out.getvalue().splitlines() if "│" in line]
    cells = [[c.strip() for c in line.split("│") if c.strip()] for line in rows]
    assert ["LWM2M", "1", "1", "2"] in cells     # updated, failed, total
    assert ["HTTP", "1", "0", "1"] in cells
    assert ["LWM2M update-failure", "0", "1", "1"] in cells
    assert ["LWM2M", "1", "1", "0"] in cells     # flashes: once, never, twice or more
