"""Build script in nbdev 2 style: package metadata comes from settings.ini, and the compiled
core in csrc/ (Cython 3 + C++17 + OpenMP) is built at install time. There is no run-time
compilation and no pure-Python fallback: a failed build fails the install."""
import sys
from configparser import ConfigParser

import numpy as np
import setuptools
from Cython.Build import cythonize

cfg = ConfigParser(delimiters=["="])
cfg.read("settings.ini", encoding="utf-8")
cfg = cfg["DEFAULT"]
for key in "version description keywords author author_email".split():
    assert key in cfg, f"settings.ini: missing key {key!r}"

licenses = {"apache2": ("Apache-2.0", "OSI Approved :: Apache Software License")}
statuses = ["1 - Planning", "2 - Pre-Alpha", "3 - Alpha", "4 - Beta", "5 - Production/Stable",
            "6 - Mature", "7 - Inactive"]
py_versions = "3.10 3.11 3.12 3.13".split()
min_python = cfg["min_python"]
lic = licenses[cfg["license"].lower()]


def reqs(key):
    return cfg.get(key, "").split()


if sys.platform == "darwin":  # Apple clang needs libomp and -Xpreprocessor
    omp_compile, omp_link = ["-Xpreprocessor", "-fopenmp"], ["-lomp"]
elif sys.platform == "win32":
    omp_compile, omp_link = ["/openmp"], []
else:
    omp_compile, omp_link = ["-fopenmp"], ["-fopenmp"]
cpp_flags = ["/std:c++17", "/O2"] if sys.platform == "win32" else ["-std=c++17", "-O3"]

def extension(name: str) -> setuptools.Extension:
    "The compiled module `feature_extraction.<name>` from `csrc/<name>.pyx` and the headers beside it."
    return setuptools.Extension(
        f"feature_extraction.{name}",
        sources=[f"csrc/{name}.pyx"],
        include_dirs=["csrc", np.get_include()],
        language="c++",
        extra_compile_args=cpp_flags + omp_compile,
        extra_link_args=omp_link,
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    )


extensions = [extension(name) for name in ("_retrieval", "_augment", "_decode", "_depthwise", "_pointwise", "_rerank",
                                            "_binary")]

setuptools.setup(
    name=cfg["lib_name"],
    version=cfg["version"],
    license=lic[0],
    classifiers=[
        "Development Status :: " + statuses[int(cfg["status"])],
        "Intended Audience :: " + cfg["audience"].title(),
        "Natural Language :: " + cfg["language"].title(),
        "License :: " + lic[1],
    ] + [f"Programming Language :: Python :: {v}" for v in py_versions[py_versions.index(min_python):]],
    url=cfg["git_url"],
    packages=setuptools.find_packages(include=["feature_extraction", "feature_extraction.*"]),
    include_package_data=True,
    install_requires=reqs("requirements"),
    extras_require={"dev": reqs("dev_requirements"), "cpu": reqs("cpu_requirements"),
                    "onnx": reqs("onnx_requirements"), "serve": reqs("serve_requirements"),
                    "parquet": reqs("parquet_requirements")},
    python_requires=">=" + min_python,
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    zip_safe=False,
    ext_modules=cythonize(extensions, compiler_directives={"language_level": "3"}),
    entry_points={
        "console_scripts": cfg.get("console_scripts", "").split(),
        "nbdev": [f"{cfg.get('lib_path')}={cfg.get('lib_path')}._modidx:d"],
    },
    author=cfg["author"],
    author_email=cfg["author_email"],
    description=cfg["description"],
    keywords=cfg["keywords"],
)
