"""Screenshots of every console page, taken by the console's browser test (headless Chromium, Debian's
``chromium``, through Playwright) against ``fota-server run`` with an emulated fleet.

    python tools/screenshots.py [--out build/screenshots]

Writes fleet.png, firmware.png, device.png (tablet width, with the protocol trace and the object explorer),
campaign.png (a campaign at its end, its chart and cells), campaign-queued.png, campaigns.png and device-http.png
into ``--out`` (``build/`` is not committed). Needs what the test needs: Chromium on the PATH (or
``FOTA_TEST_CHROMIUM``) and the project's test extra.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "screenshots")
    args = parser.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "-p", "no:cacheprovider",
                          "tests/web/test_console_browser.py", "-k", "update_a_fleet_from_the_browser"],
                         cwd=ROOT, env={**os.environ, "FOTA_SCREENSHOTS": str(out)})
    if run.returncode != 0:
        print("the browser test failed or was skipped; no screenshots", file=sys.stderr)
        return run.returncode or 1
    for shot in sorted(out.glob("*.png")):
        print(shot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
