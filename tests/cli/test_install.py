"""`meson install` lays out a heaptrail that starts without compiling: the
`heaptrail` command (front.c) naming the installed launcher, the launcher,
and every module of the Python package with its bytecode beside it (a user
who cannot write there would otherwise pay for compiling them on every
command)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
import unittest

BUILD = os.environ.get("HTR_BUILD_ROOT", "")
PREFIX = os.environ.get("HTR_PREFIX", "/usr/local")
DATADIR = os.environ.get("HTR_DATADIR", "share")
BINDIR = os.environ.get("HTR_BINDIR", "bin")
LIBEXECDIR = os.environ.get("HTR_LIBEXECDIR", "libexec")


@unittest.skipUnless(BUILD and os.path.isdir(BUILD), "no build directory given")
class InstallTree(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.tmp = tempfile.TemporaryDirectory()
        r = subprocess.run(["meson", "install", "-C", BUILD, "--no-rebuild", "--quiet", "--destdir", cls.tmp.name],
                           capture_output=True, text=True, timeout=120, check=False)
        if r.returncode != 0:
            raise AssertionError(f"meson install failed: {r.stdout[-2000:]}{r.stderr[-2000:]}")
        cls.root = os.path.join(cls.tmp.name, PREFIX.lstrip("/"))

    @classmethod
    def tearDownClass(cls) -> None:
        cls.tmp.cleanup()

    def test_command_and_launcher_installed_executable(self) -> None:
        command = os.path.join(self.root, BINDIR, "heaptrail")
        launcher = os.path.join(self.root, LIBEXECDIR, "heaptrail", "heaptrail.py")
        engine = os.path.join(self.root, LIBEXECDIR, "heaptrail", "htr-engine")
        for path in (command, launcher, engine):
            self.assertTrue(os.access(path, os.X_OK), path)
        # The command names where they are once installed (not DESTDIR's),
        # the interpreter it was built with (this one), and python3 on PATH
        # should that one be gone.
        with open(command, "rb") as handle:
            binary = handle.read()
        for path in (launcher, engine):
            installed = os.path.join(PREFIX, os.path.relpath(path, self.root)).encode()
            self.assertTrue(b"\0" + installed + b"\0" in binary, installed)
        self.assertTrue(b"\0python3\0" in binary, "python3")
        self.assertTrue(b"\0" + sys.executable.encode() + b"\0" in binary, sys.executable)

    def test_only_the_python_package_goes_to_datadir(self) -> None:
        package = os.path.join(self.root, DATADIR, "heaptrail", "python", "heaptrail")
        sources = sorted(name for name in os.listdir(package) if not name.endswith(".py"))
        self.assertEqual([name for name in sources if name != "__pycache__"], [])

    def test_every_module_has_bytecode(self) -> None:
        package = os.path.join(self.root, DATADIR, "heaptrail", "python", "heaptrail")
        modules = sorted(name for name in os.listdir(package) if name.endswith(".py"))
        self.assertIn("cli.py", modules)
        missing = [name for name in modules
                   if not os.path.exists(importlib.util.cache_from_source(os.path.join(package, name)))]
        self.assertEqual(missing, [])


if __name__ == "__main__":
    unittest.main()
