# SPDX-License-Identifier: MIT
# Builds the extension pith._pith with CMake (target pith_python, python/CMakeLists.txt) and packages
# it with python/pith. Needs CMake, a C++20 compiler, pybind11-dev, PCRE2 and utf8proc
# (cmake/setup-debian.sh); no network. PITH_CMAKE_ARGS adds CMake options ("-DPITH_NATIVE=OFF" for a
# module that runs on other x86-64 machines than the one that built it); CMAKE_BUILD_PARALLEL_LEVEL
# sets the compile jobs.
import glob
import os
import shlex
import shutil
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = os.path.dirname(os.path.abspath(__file__))


class CMakeExtension(Extension):
    def __init__(self, name):
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        target = os.path.abspath(self.get_ext_fullpath(ext.name))
        build = os.path.abspath(os.path.join(self.build_temp, "cmake"))
        configure = ["cmake", "-S", ROOT, "-B", build, "-DCMAKE_BUILD_TYPE=Release", "-DPITH_BUILD_PYTHON=ON",
                     "-DPITH_BUILD_TESTS=OFF", "-DPITH_BUILD_BENCHMARKS=OFF", "-DPITH_BUILD_EXAMPLES=OFF",
                     "-DPITH_INSTALL=OFF", "-DPITH_WERROR=OFF", f"-DPython3_EXECUTABLE={sys.executable}"]
        configure += shlex.split(os.environ.get("PITH_CMAKE_ARGS", ""))
        subprocess.check_call(configure)
        subprocess.check_call(["cmake", "--build", build, "--target", "pith_python"])
        built = glob.glob(os.path.join(build, "python", "pith", "_pith*.so"))
        if len(built) != 1:
            raise RuntimeError(f"the CMake build made {built or 'no'} extension files in {build}/python/pith")
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(built[0], target)


setup(
    packages=["pith"],
    package_dir={"pith": "python/pith"},
    package_data={"pith": ["*.pyi", "py.typed"]},
    ext_modules=[CMakeExtension("pith._pith")],
    cmdclass={"build_ext": CMakeBuild},
    zip_safe=False,
)
