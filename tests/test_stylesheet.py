"""Every id and class the stylesheet styles is one the app's widgets carry (no dead selectors)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEXTUAL_OWN = {"-invalid"}  # classes Textual's widgets set themselves


def test_every_id_and_class_selector_is_used():
    css = re.sub(r"/\*.*?\*/", "", (ROOT / "assets" / "app.tcss").read_text(), flags=re.S)
    selectors = " ".join(re.findall(r"([^{}]+)\{", css))
    source = "\n".join(path.read_text() for path in (ROOT / "tui").rglob("*.py"))
    unused = [f"#{name}" for name in set(re.findall(r"#([\w-]+)", selectors)) if f'"{name}"' not in source]
    unused += [f".{name}" for name in set(re.findall(r"\.([\w-]+)", selectors)) - TEXTUAL_OWN
               if not re.search(rf'"[^"\n]*(?<![\w-]){re.escape(name)}(?![\w-])[^"\n]*"', source)]
    assert sorted(unused) == []
