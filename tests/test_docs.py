"""The README is a short guide and the docs reach every file: README.md at most 250 lines; every file in the
repository is linked from the README or a page it links (or sits in a folder the README links), two clicks at most;
every result file in benchmarks/results is cited by a page, a model card or the code."""
from __future__ import annotations

import fnmatch
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)#\s]+)")


def tracked_files() -> list:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [ROOT / line for line in out.splitlines() if (ROOT / line).exists()]


def links(page: Path) -> set:
    """Resolved targets of the relative markdown links on `page`."""
    found = set()
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        if "://" not in target:
            found.add((page.parent / target).resolve())
    return found


def test_readme_is_a_short_guide():
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 250


def test_every_file_is_two_clicks_from_the_readme():
    readme = ROOT / "README.md"
    first = links(readme)
    missing = [t for t in first if not t.exists()]
    pages = [t for t in first if t.suffix == ".md" and t.is_file()]
    for page in pages:
        missing += [t for t in links(page) if not t.exists()]
    assert not missing, f"broken links: {sorted(map(str, missing))}"
    reached = set(first) | {t for page in pages for t in links(page)}
    folders = {t for t in first if t.is_dir()}  # a folder's listing is the second click
    unreachable = [f.relative_to(ROOT) for f in tracked_files()
                   if f.resolve() not in reached and f.resolve().parent not in folders and f != readme]
    assert not unreachable, f"not reachable from README.md in two clicks: {sorted(map(str, unreachable))}"


def cited_patterns(text: str) -> set:
    """File names and name patterns cited in `text`: `a_{1,2}.json`, `a_*.json` and `..._b.json` count."""
    patterns = set()
    for token in re.findall(r"[\w.*{},/-]+\.(?:json|log)", text):
        name = token.rsplit("/", 1)[-1].replace("...", "*")
        braces = re.search(r"{([^}]*)}", name)
        options = braces.group(1).split(",") if braces else [""]
        patterns |= {name[:braces.start()] + o + name[braces.end():] if braces else name for o in options}
    return patterns


def test_every_result_file_is_cited():
    sources = [f for f in tracked_files() if f.suffix in (".md", ".py") and "benchmarks/results" not in str(f)]
    text = "\n".join(f.read_text(encoding="utf-8") for f in sources)
    patterns = cited_patterns(text)
    results = [f for f in tracked_files() if f.is_relative_to(ROOT / "benchmarks" / "results")]
    uncited = [str(f.relative_to(ROOT)) for f in results
               if not any(fnmatch.fnmatch(f.name, p) for p in patterns)
               and (f.parent.name == "results" or f"{f.parent.name}/" not in text)]
    assert not uncited, f"result files no page cites: {uncited}"
