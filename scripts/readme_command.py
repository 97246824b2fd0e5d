"""Print one of the README's two set-up commands.

README.md marks each with an HTML comment (``<!-- command: quickstart -->`` or
``<!-- command: test -->``) directly above a fenced code block holding one command.
`.ci/run` and the newcomer test read the commands from here, so the README is the
single source of truth.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_command(name: str, readme: Path = README) -> str:
    text = readme.read_text()
    m = re.search(rf"<!-- command: {re.escape(name)} -->\s*```[a-z]*\n(.*?)\n```", text, re.S)
    if not m:
        raise SystemExit(f"README.md has no block marked <!-- command: {name} -->")
    # Allow the command to be wrapped over lines with trailing backslashes.
    return " ".join(line.rstrip("\\").strip() for line in m.group(1).splitlines()).strip()


if __name__ == "__main__":
    print(readme_command(sys.argv[1] if len(sys.argv) > 1 else "test"))
