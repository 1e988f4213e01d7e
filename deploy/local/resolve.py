"""Fetch the servers' artefacts once: JVM classpaths from Maven, anvil from npm.

Both are cached so that a warm start runs neither Maven nor npm:

* a classpath is stored in ``<run>/cache/<name>-<hash of the pom>.classpath``
  (the jars themselves stay in Maven's local repository, the download cache);
  editing a pom changes the hash and so resolves again;
* ``npm ci`` runs only when ``deploy/local/node_modules`` lacks anvil at the
  version ``package-lock.json`` pins (``deploy/dev.sh setup`` may have run it).
"""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from deploy.local.procs import file_lock
from deploy.local.settings import PACKAGE_DIR, Settings

Echo = Callable[[str], None]

#: Pinned so resolution does not depend on whichever plugin version is newest.
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"

MAVEN_DIR = PACKAGE_DIR / "maven"
NODE_DIR = PACKAGE_DIR
NODE_MODULES = NODE_DIR / "node_modules"

#: anvil ships one npm package per platform beside the @foundry-rs/anvil JS
#: wrapper. package.json depends on the platform package directly: the wrapper
#: lists every platform, and npm ci refuses a lock that misses any of them (the
#: registry these machines reach hosts only the linux-amd64 build). We run the
#: binary directly too, without a node process in between.
_ANVIL_PLATFORMS = {
    ("Linux", "x86_64"): "anvil-linux-amd64",
    ("Linux", "aarch64"): "anvil-linux-arm64",
    ("Darwin", "x86_64"): "anvil-darwin-amd64",
    ("Darwin", "arm64"): "anvil-darwin-arm64",
}


class ResolveError(RuntimeError):
    """Maven or npm could not provide what a server needs."""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def maven_classpath(name: str, label: str, settings: Settings, echo: Echo) -> list[Path]:
    """The runtime classpath of ``deploy/local/maven/<name>/pom.xml``.

    Calls Maven only when there is no cached classpath for this exact pom, or
    when a cached jar has gone missing from the local repository.
    """
    pom = MAVEN_DIR / name / "pom.xml"
    cache = settings.cache_dir / f"{name}-{_sha256(pom)[:16]}.classpath"
    jars = _read_classpath(cache)
    if jars is not None:
        return jars
    with file_lock(settings.cache_dir / "maven.lock"):
        # Another launcher may have resolved it while we waited for the lock.
        jars = _read_classpath(cache)
        if jars is not None:
            return jars
        echo(f"resolving {label} jars from Maven Central (first run only)…")
        _run_maven(pom, cache, settings)
    jars = _read_classpath(cache)
    if jars is None:
        raise ResolveError(f"Maven wrote no usable classpath for {pom}")
    return jars


def _read_classpath(cache: Path) -> list[Path] | None:
    """The cached classpath, or None if absent or if a jar has disappeared."""
    try:
        text = cache.read_text().strip()
    except OSError:
        return None
    jars = [Path(p) for p in text.split(":") if p]
    if not jars or not all(jar.is_file() for jar in jars):
        return None
    return jars


def _run_maven(pom: Path, cache: Path, settings: Settings) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ResolveError("Maven (mvn) is not on PATH; install it, e.g. `apt-get install maven`")
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    cmd = [
        mvn, "-B", "-q", "-f", str(pom),
        f"{DEPENDENCY_PLUGIN}:build-classpath",
        f"-Dmdep.outputFile={tmp}",
        "-Dmdep.includeScope=runtime",
        "-Dmdep.pathSeparator=:",
        "-Dstyle.color=never",
    ]  # fmt: skip
    if settings.maven_repo_local is not None:
        cmd.append(f"-Dmaven.repo.local={settings.maven_repo_local}")
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0 or not tmp.exists():
        output = (done.stdout + done.stderr).strip()[-4000:]
        raise ResolveError(f"`{' '.join(cmd)}` failed ({done.returncode}):\n{output}")
    # Renamed into place only when complete: a half-written file never counts.
    tmp.replace(cache)


def anvil_binary(settings: Settings, echo: Echo) -> Path:
    """The anvil executable from ``deploy/local/node_modules``; ``npm ci`` if needed."""
    package = _anvil_package()
    if _npm_current(package):
        return _anvil_path(package)
    with file_lock(settings.cache_dir / "npm.lock"):
        if not _npm_current(package):
            echo("installing anvil from npm (first run only)…")
            _run_npm_ci()
    if not _npm_current(package):
        raise ResolveError(_not_installed_message(package))
    return _anvil_path(package)


def _anvil_package() -> str:
    key = (platform.system(), platform.machine())
    package = _ANVIL_PLATFORMS.get(key)
    if package is None:
        raise ResolveError(f"@foundry-rs/anvil has no binary for {key[0]}/{key[1]}")
    return package


def _not_installed_message(package: str) -> str:
    return (
        f"npm ci did not install @foundry-rs/{package} at the locked version: "
        "deploy/local/package.json pins only @foundry-rs/anvil-linux-amd64; on another "
        f"platform add @foundry-rs/{package} at the same version to its optionalDependencies"
    )


def _anvil_path(package: str) -> Path:
    return NODE_MODULES / "@foundry-rs" / package / "bin" / "anvil"


def _npm_current(package: str) -> bool:
    """Installed and at the version package-lock.json pins (whoever ran npm ci)."""
    if not _anvil_path(package).is_file():
        return False
    try:
        lock = json.loads((NODE_DIR / "package-lock.json").read_text())
        installed = json.loads((NODE_MODULES / "@foundry-rs" / package / "package.json").read_text())
    except (OSError, ValueError):
        return False
    wanted = lock.get("packages", {}).get(f"node_modules/@foundry-rs/{package}", {}).get("version")
    return wanted is not None and installed.get("version") == wanted


def _run_npm_ci() -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise ResolveError("npm is not on PATH; install Node.js 20+ (it ships npm)")
    # --ignore-scripts: the package's postinstall only sets up its JS wrapper,
    # and we run the platform binary directly.
    cmd = [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"]
    done = subprocess.run(cmd, cwd=NODE_DIR, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        # npm puts the cause first and then its usage text: keep the top.
        output = "\n".join((done.stdout + done.stderr).strip().splitlines()[:25])
        raise ResolveError(f"`npm ci` in {NODE_DIR} failed ({done.returncode}):\n{output}")
