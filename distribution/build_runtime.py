"""How `pip install .` assembles the torch-free runtime package `flowtts_runtime` (pyproject.toml names this
build step in [tool.setuptools] cmdclass).

The package is runtime/, with the text front end (text/) and the torch-free root modules the research code shares
with it (SHARED) inside. In this checkout those are top-level modules (`import ode`); inside the package their
imports of each other become package-relative (`from . import ode`), so that installing the runtime puts no
generic top-level names (text, ode, audio, ...) into site-packages.
"""
import re
from pathlib import Path

from setuptools.command.build_py import build_py

PACKAGE = "flowtts_runtime"
SHARED = ("ode", "sampling", "audio", "atomic", "excitation")  # root modules the runtime needs (torch-free)
TOP_LEVEL = SHARED + ("text",)
_NAMES = "|".join(TOP_LEVEL)


def package_relative(source: str) -> str:
    """Rewrite `import ode [as x]`, `from ode import ...` and `from text.sentences import ...` (the checkout's
    top-level names) as imports from the package itself."""
    source = re.sub(rf"^(\s*)import ({_NAMES})\b", r"\1from . import \2", source, flags=re.M)
    return re.sub(rf"^(\s*)from ({_NAMES})(\.|\s)", r"\1from .\2\3", source, flags=re.M)


class BuildRuntime(build_py):
    def find_package_modules(self, package, package_dir):
        modules = super().find_package_modules(package, package_dir)
        if package == PACKAGE:
            modules += [(package, name, f"{name}.py") for name in SHARED]
        return modules

    def build_module(self, module, module_file, package):
        result = super().build_module(module, module_file, package)
        if package in (PACKAGE, [PACKAGE]):  # setuptools passes the package as a name or a list of parts
            target = Path(self.get_module_outfile(self.build_lib, [PACKAGE], module))
            target.write_text(package_relative(target.read_text(encoding="utf-8")), encoding="utf-8")
        return result
