"""Spark needs Java 17+; say so plainly before a JVM fails to start."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

MINIMUM_JAVA = 17


class JavaMissingError(RuntimeError):
    pass


def java_version() -> int | None:
    java = os.path.join(os.environ["JAVA_HOME"], "bin", "java") if os.environ.get("JAVA_HOME") else "java"
    if shutil.which(java) is None:
        return None
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def require_java() -> int:
    """Return the Java major version, or raise with what to install."""
    version = java_version()
    if version is None or version < MINIMUM_JAVA:
        found = "no java on PATH or JAVA_HOME" if version is None else f"Java {version}"
        raise JavaMissingError(
            f"Spark needs Java {MINIMUM_JAVA} or newer; found {found}. "
            "Install it (Debian/Ubuntu: apt-get install openjdk-17-jre-headless) or set JAVA_HOME."
        )
    return version
