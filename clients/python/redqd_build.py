"""A PEP 517 build backend for the redqd client, standard library only.

pyproject.toml names it (backend-path "."), so `pip install ./clients/python` builds with
nothing but Python: no setuptools or wheel to fetch, hence offline. It builds exactly
what the client is: the pure-Python package redqd_client/ and the `redqctl` console
script.

Hooks: build_wheel, build_sdist, build_editable (PEP 660: a .pth file pointing at this
directory) and the get_requires_* hooks (nothing). Metadata comes from pyproject.toml's
[project] table; the version from redqd_client/__init__.py (__version__), its one home.
"""

import base64
import hashlib
import io
import json
import os
import re
import tarfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE = "redqd_client"
# Fixed timestamps: the same sources give the same wheel, byte for byte.
ZIP_TIME = (1980, 1, 1, 0, 0, 0)
SDIST_MTIME = 315532800


# ---- metadata --------------------------------------------------------------------------

def _pyproject():
    path = os.path.join(HERE, "pyproject.toml")
    try:
        import tomllib                      # Python 3.11+
    except ImportError:
        with open(path, encoding="utf-8") as f:
            return _toml_subset(f.read())
    with open(path, "rb") as f:
        return tomllib.load(f)


def _toml_subset(text):
    """The TOML this pyproject.toml uses, for Pythons without tomllib: [tables] and
    `key = value` lines whose value is a string or a one-line list of strings."""
    doc = table = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            table = doc
            for part in line.strip("[]").split("."):
                table = table.setdefault(part.strip(), {})
            continue
        key, _, value = line.partition("=")
        table[key.strip()] = json.loads(value.strip())
    return doc


def _version():
    with open(os.path.join(HERE, PACKAGE, "__init__.py"), encoding="utf-8") as f:
        m = re.search(r'^__version__ = "([^"]+)"', f.read(), re.M)
    if m is None:
        raise RuntimeError(f"{PACKAGE}/__init__.py has no __version__")
    return m.group(1)


def _dist_name(project):
    return re.sub(r"[-_.]+", "_", project["name"]).lower()


def _metadata(project, version):
    lines = ["Metadata-Version: 2.1", f"Name: {project['name']}", f"Version: {version}"]
    if project.get("description"):
        lines.append(f"Summary: {project['description']}")
    if project.get("requires-python"):
        lines.append(f"Requires-Python: {project['requires-python']}")
    lines += [f"Requires-Dist: {d}" for d in project.get("dependencies", [])]
    for extra, deps in project.get("optional-dependencies", {}).items():
        lines.append(f"Provides-Extra: {extra}")
        lines += [f'Requires-Dist: {d}; extra == "{extra}"' for d in deps]
    return "\n".join(lines) + "\n"


def _dist_info_files(project, version):
    """{name in the .dist-info directory: bytes}, RECORD excepted."""
    files = {
        "METADATA": _metadata(project, version),
        "WHEEL": ("Wheel-Version: 1.0\nGenerator: redqd_build\nRoot-Is-Purelib: true\n"
                  "Tag: py3-none-any\n"),
    }
    scripts = project.get("scripts", {})
    if scripts:
        files["entry_points.txt"] = "[console_scripts]\n" + "".join(
            f"{name} = {target}\n" for name, target in scripts.items())
    return {name: text.encode("utf-8") for name, text in files.items()}


def _package_files():
    """{path in the wheel: bytes} for every .py file of the package, sorted."""
    out = {}
    root = os.path.join(HERE, PACKAGE)
    for name in sorted(os.listdir(root)):
        if name.endswith(".py"):
            with open(os.path.join(root, name), "rb") as f:
                out[f"{PACKAGE}/{name}"] = f.read()
    return out


# ---- wheels ----------------------------------------------------------------------------

def _write_wheel(wheel_directory, contents):
    """Writes a wheel holding contents ({path: bytes}) plus its .dist-info; returns its
    file name."""
    project = _pyproject()["project"]
    version = _version()
    dist = _dist_name(project)
    info = f"{dist}-{version}.dist-info"
    files = dict(contents)
    files.update({f"{info}/{name}": data
                  for name, data in _dist_info_files(project, version).items()})
    record = [f"{path},sha256={_digest(data)},{len(data)}" for path, data in files.items()]
    record.append(f"{info}/RECORD,,")
    files[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode("utf-8")

    name = f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w",
                         zipfile.ZIP_DEFLATED) as zf:
        for path, data in files.items():
            zi = zipfile.ZipInfo(path, ZIP_TIME)
            zi.external_attr = 0o644 << 16
            zi.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(zi, data)
    return name


def _digest(data):
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    return _write_wheel(wheel_directory, _package_files())


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    """PEP 660: a wheel whose .pth file puts this directory on sys.path."""
    pth = (HERE + "\n").encode("utf-8")
    return _write_wheel(wheel_directory, {f"{PACKAGE}.pth": pth})


def build_sdist(sdist_directory, config_settings=None):
    project = _pyproject()["project"]
    version = _version()
    base = f"{_dist_name(project)}-{version}"
    files = {"pyproject.toml": None, "redqd_build.py": None}
    files.update(_package_files())
    files["PKG-INFO"] = _metadata(project, version).encode("utf-8")
    name = base + ".tar.gz"
    with tarfile.open(os.path.join(sdist_directory, name), "w:gz", format=tarfile.PAX_FORMAT) as tf:
        for path, data in files.items():
            if data is None:
                with open(os.path.join(HERE, path), "rb") as f:
                    data = f.read()
            ti = tarfile.TarInfo(f"{base}/{path}")
            ti.size, ti.mtime, ti.mode = len(data), SDIST_MTIME, 0o644
            tf.addfile(ti, io.BytesIO(data))
    return name


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def get_requires_for_build_editable(config_settings=None):
    return []
