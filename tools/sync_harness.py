"""Copies the run harness of td3.py (everything below the marker line) into the other five scripts.

The harness is the same text in every script so that each file can be copied and run on its own; change it in
td3.py, then run this. tests/test_layout.py fails while any script's harness differs from td3.py's.

    python tools/sync_harness.py          # rewrite the five others
    python tools/sync_harness.py --check  # exit 1 and name the scripts that differ, change nothing
"""

import argparse
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MARKER = "# ---- run harness: the same in every script below this line ----\n"
SCRIPTS = ("td3", "td7", "td3_bc", "sac", "ddpg", "ppo")


def split(script: str) -> tuple:
    """(the reader's part, the harness from the marker on) of a script, or None if it is missing or does not hold
    exactly one marker."""
    try:
        with open(os.path.join(ROOT, f"{script}.py")) as f:
            text = f.read()
    except OSError:
        return None
    if text.count(MARKER) != 1:
        return None
    head, tail = text.split(MARKER)
    return head, MARKER + tail


def main(check: bool) -> int:
    if split("td3") is None:
        print(f"td3.py must exist and hold the marker line exactly once: {MARKER.strip()}")
        return 1
    harness, parts = split("td3")[1], {script: split(script) for script in SCRIPTS[1:]}
    for script in [script for script, part in parts.items() if part is None]:
        print(f"{script}.py is missing or does not hold the marker line exactly once: nothing done")
    differ = [script for script, part in parts.items() if part is not None and part[1] != harness]
    if check:
        for script in differ:
            print(f"{script}.py: its harness differs from td3.py's (python tools/sync_harness.py copies it)")
        return 1 if differ or None in parts.values() else 0
    for script in differ:
        with open(os.path.join(ROOT, f"{script}.py"), "w") as f:
            f.write(parts[script][0] + harness)
        print(f"{script}.py: harness copied from td3.py")
    return 1 if None in parts.values() else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Copies td3.py's run harness into the other five scripts.")
    parser.add_argument("--check", action="store_true", help="exit 1 and name the scripts that differ, change nothing")
    sys.exit(main(parser.parse_args().check))
