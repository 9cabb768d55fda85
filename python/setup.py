"""Builds the groupmates Python package: the pure-Python `groupmates` package plus the extensions
`groupmates._core` (LibTorch-free streaming) and `groupmates._engine` (selection and probes of a
Python model: LibTorch + the interpreter torch's libtorch_python), and the SentencePiece shim
`libgroupmates_spm.so`, all built by CMake from this repository (python/ must sit in its checkout;
nothing is downloaded).

    /usr/bin/python3 -m venv --system-site-packages .venv      # sees Debian's torch and pybind11
    .venv/bin/pip install --no-build-isolation ./python

Environment:
    GROUPMATES_BUILD_DIR   CMake build directory, absolute (pip runs this file in python/; default:
                           <repo>/build-python); reused incrementally
    GROUPMATES_JOBS        parallel compile jobs (default 2)
    GROUPMATES_CMAKE_ARGS  extra CMake arguments, e.g. "-DCMAKE_BUILD_TYPE=RelWithDebInfo"
    GROUPMATES_ENGINE      build groupmates._engine: "auto" (default: try; on failure warn and install
                           without it, selection then raises EngineUnavailableError), "1" (required:
                           a failure fails the install) or "0" (skip)
    GROUPMATES_ENGINE_BUILD_DIR  its CMake build directory (a LibTorch build; default:
                           GROUPMATES_BUILD_DIR + "-engine")
"""
import os
import shlex
import shutil
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        if ext.name == "groupmates._engine":
            return self._build_engine(ext)

        if not os.path.exists(os.path.join(REPO, "CMakeLists.txt")) or not os.path.isdir(os.path.join(REPO, "loader")):
            raise RuntimeError(f"groupmates: {HERE} must be the python/ directory of a groupmates checkout "
                               f"(no CMakeLists.txt/loader in {REPO}); run pip install from the checkout")
        build_dir = os.path.abspath(os.environ.get("GROUPMATES_BUILD_DIR", os.path.join(REPO, "build-python")))
        jobs = os.environ.get("GROUPMATES_JOBS", "2")
        import pybind11  # Debian's python3-pybind11 (or any pybind11 the interpreter sees)
        configure = ["cmake", "-S", REPO, "-B", build_dir,
                     "-DCMAKE_BUILD_TYPE=Release",
                     "-DGROUPMATES_LOADER_ONLY=ON",   # the extension needs no LibTorch
                     "-DGROUPMATES_BUILD_TESTS=OFF",
                     "-DGROUPMATES_PYTHON=ON",
                     f"-DPYTHON_EXECUTABLE={sys.executable}",
                     f"-Dpybind11_DIR={pybind11.get_cmake_dir()}"]
        configure += shlex.split(os.environ.get("GROUPMATES_CMAKE_ARGS", ""))
        subprocess.check_call(configure)
        subprocess.check_call(["cmake", "--build", build_dir, "-j", jobs, "--target", "groupmates_python", "groupmates_spm"])

        built_ext = _find(build_dir, "python", "_core" + _ext_suffix())
        shim = _find(build_dir, "loader", "libgroupmates_spm.so")
        target = self.get_ext_fullpath(ext.name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy2(built_ext, target)
        shutil.copy2(shim, os.path.join(os.path.dirname(target), "libgroupmates_spm.so"))


    def _build_engine(self, ext):
        mode = os.environ.get("GROUPMATES_ENGINE", "auto").lower()
        target = self.get_ext_fullpath(ext.name)
        if mode in ("0", "off", "no", "false"):
            return
        try:
            import pybind11
            import torch
            core_dir = os.path.abspath(os.environ.get("GROUPMATES_BUILD_DIR", os.path.join(REPO, "build-python")))
            build_dir = os.path.abspath(os.environ.get("GROUPMATES_ENGINE_BUILD_DIR", core_dir + "-engine"))
            jobs = os.environ.get("GROUPMATES_JOBS", "2")
            configure = ["cmake", "-S", REPO, "-B", build_dir,
                         "-DCMAKE_BUILD_TYPE=Release",
                         "-DGROUPMATES_BUILD_TESTS=OFF",
                         "-DGROUPMATES_PYTHON=ON",
                         f"-DPYTHON_EXECUTABLE={sys.executable}",
                         f"-Dpybind11_DIR={pybind11.get_cmake_dir()}"]
            # The LibTorch of the interpreter's torch (a pip torch 2.x ships its CMake config; Debian's
            # torch is found in the system paths).
            prefix = getattr(torch.utils, "cmake_prefix_path", "")
            if prefix and os.path.isdir(prefix):
                configure.append(f"-DCMAKE_PREFIX_PATH={prefix}")
            configure += shlex.split(os.environ.get("GROUPMATES_CMAKE_ARGS", ""))
            subprocess.check_call(configure)
            subprocess.check_call(["cmake", "--build", build_dir, "-j", jobs, "--target", "groupmates_engine"])
            built = _find(build_dir, "python", "_engine" + _ext_suffix())
        except Exception as e:
            if mode in ("1", "on", "yes", "true"):
                raise
            sys.stderr.write(f"groupmates: WARNING: groupmates._engine was not built ({type(e).__name__}: {e}); "
                             "plain streaming works, selection modes and probes raise EngineUnavailableError. "
                             "Set GROUPMATES_ENGINE=1 to make this an error.\n")
            if os.path.exists(target):
                os.remove(target)
            return
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy2(built, target)


def _ext_suffix():
    import sysconfig
    return sysconfig.get_config_var("EXT_SUFFIX")


def _find(build_dir, sub, name):
    path = os.path.join(build_dir, sub, name)
    if not os.path.exists(path):
        raise RuntimeError(f"groupmates: CMake did not produce {path}")
    return path


setup(
    name="groupmates",
    version="0.1.0",
    description="Streaming data loader for LLM pretraining (C++ core, PyTorch integration)",
    packages=["groupmates"],
    package_dir={"groupmates": "groupmates"},
    package_data={"groupmates": ["py.typed", "*.pyi"]},  # typed package (PEP 561) with stubs of the extensions
    ext_modules=[Extension("groupmates._core", sources=[]), Extension("groupmates._engine", sources=[])],
    cmdclass={"build_ext": CMakeBuild},
    python_requires=">=3.8",
    install_requires=[],  # torch and numpy: from the system (Debian) or the user's environment
    zip_safe=False,
)
