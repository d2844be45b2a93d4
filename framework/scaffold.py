"""``plugnet new-plugin NAME [DIR]``: a ready plugin distribution from the templates in
``framework/templates/plugin`` (``${name}`` placeholders, `string.Template`).

What it writes (DIR defaults to ``plugnet-NAME``, the distribution's name)::

    DIR/pyproject.toml          the distribution, with the `plugnet` entry point naming NAME
    DIR/README.md
    DIR/NAME/__init__.py        one layer and one activation, their maths in the docstrings
    DIR/tests/test_NAME.py      plugnet's pytest checks of both, and a model that trains

The files are written into a temporary directory beside DIR and renamed into place, so a
failure leaves nothing behind.
"""

import keyword
import os
import re
import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path
from string import Template

from framework.errors import ConfigError

# Template file -> where it goes, NAME standing for the package name.
FILES = {
    "pyproject.toml.tmpl": "pyproject.toml",
    "README.md.tmpl": "README.md",
    "package/__init__.py.tmpl": "NAME/__init__.py",
    "tests/test_plugin.py.tmpl": "tests/test_NAME.py",
}
# Names a plugin package must not take: plugnet's own packages, and the standard library's.
TAKEN = {"framework", "plugins", "plugnet", "tests"} | set(sys.stdlib_module_names)


def check_name(name):
    """Raise `ConfigError` unless ``name`` can be the plugin's Python package name."""
    if not (name.isascii() and name.isidentifier()) or keyword.iskeyword(name):
        suggestion = re.sub(r"\W", "_", name.strip().lower()).strip("_") or "my_plugin"
        if suggestion[0].isdigit() or keyword.iskeyword(suggestion):
            suggestion = f"plugnet_{suggestion}"
        raise ConfigError(
            f"'{name}' is not a valid Python package name: use ASCII letters, digits and "
            f"underscores, not starting with a digit (e.g. '{suggestion}')"
        )
    if name in TAKEN:
        raise ConfigError(
            f"'{name}' is taken (by plugnet or the standard library); choose another name, e.g. 'plugnet_{name}'"
        )


def check_directory(directory):
    if directory.is_dir():
        if any(directory.iterdir()):
            raise ConfigError(f"{directory} exists and is not empty; give a new or empty directory")
    elif directory.exists():
        raise ConfigError(f"{directory} exists and is not a directory")


def distribution_name(name):
    """``plugnet-NAME`` with hyphens, as plugin distributions are named (pytest's are
    ``pytest-*``): also the default directory, which, being no Python name, never shadows
    the installed package when pytest runs from the directory above it."""
    name = name.replace("_", "-")
    return name if name.startswith("plugnet-") else f"plugnet-{name}"


def render(name):
    """``{relative path: text}`` of the plugin's files."""
    values = {"name": name, "distribution": distribution_name(name)}
    templates = resources.files("framework") / "templates" / "plugin"
    return {
        target.replace("NAME", name): Template(
            (templates / source).read_text(encoding="utf-8")
        ).substitute(values)
        for source, target in FILES.items()
    }


def new_plugin(name, directory=None):
    """Write the plugin package ``name`` as a distribution into ``directory`` (default:
    ``./plugnet-name``), which must not exist or be empty; return the directory."""
    check_name(name)
    directory = Path(directory if directory is not None else distribution_name(name))
    check_directory(directory)
    files = render(name)
    parent = directory.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=parent))
    try:
        for relative, text in files.items():
            path = staging / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        staging.chmod(0o777 & ~current_umask())  # mkdtemp's 0700 would hide it from others
        os.replace(staging, directory)  # onto an empty directory too
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return directory


def current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask
