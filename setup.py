"""Build script: maps the top-level source folders into the ``huma_rt`` package and builds
the native CPU rasterizer extension (see kernels/)."""

from pathlib import Path

from setuptools import find_namespace_packages, find_packages, setup

HERE = Path(__file__).parent
# import-package name -> source folder; export/, engines/, kernels/, train/ and bench/ ship in the wheel
PACKAGE_ROOTS = {
    "huma_rt": "huma_rt",
    "huma_rt.export": "export",
    "huma_rt.engines": "engines",
    "huma_rt.kernels": "kernels",
    "huma_rt.bench": "bench",
    "huma_rt.train": "train",
}
# data folders (no __init__.py) are declared as packages too, so setuptools ships their files
# without warning that an importable folder is missing from `packages`
DATA_FOLDERS = ("huma_rt/data", "huma_rt/serve/web")


def _packages() -> tuple[list[str], dict[str, str]]:
    packages, package_dir = [], {}
    for name, folder in PACKAGE_ROOTS.items():
        packages.append(name)
        package_dir[name] = folder
        for sub in find_packages(str(HERE / folder)):
            packages.append(f"{name}.{sub}")
            package_dir[f"{name}.{sub}"] = f"{folder}/{sub.replace('.', '/')}"
    for folder in DATA_FOLDERS:
        base = folder.replace("/", ".")
        for sub in ["", *find_namespace_packages(str(HERE / folder))]:
            name = f"{base}.{sub}" if sub else base
            packages.append(name)
            package_dir[name] = f"{folder}/{sub.replace('.', '/')}" if sub else folder
    return packages, package_dir


def _ext_modules() -> list:
    # The kernels folder owns the extension's definition (sources, flags, OpenMP).
    import importlib.util

    spec = importlib.util.spec_from_file_location("_kernels_build", HERE / "kernels" / "build_ext.py")
    if spec is None or not (HERE / "kernels" / "build_ext.py").exists():
        return []
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.ext_modules(HERE)


packages, package_dir = _packages()
setup(packages=packages, package_dir=package_dir, ext_modules=_ext_modules())
