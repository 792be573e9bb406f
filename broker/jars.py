"""Find the official Apache Kafka jars: a downloaded Kafka, Maven, or Apache's archive.

In this order:
1. ``KAFKA_HOME`` is set: the ``libs/`` of that Kafka (the tarball from kafka.apache.org).
2. ``mvn`` is on PATH: Maven resolves ``org.apache.kafka:kafka_2.13`` from broker/pom.xml
   into its local repository (~/.m2), and we cache the resulting class path.
3. Neither: download the release archive from Apache, check its published SHA-512, and
   unpack it into the cache. This is the tutorial's "download Kafka" step, automated.

The cache is ``$XDG_CACHE_HOME/kafka-python-tutorial`` (default ~/.cache/...): outside the
repository, so that ``python -m broker stop --wipe`` does not throw the jars away.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

DEFAULT_KAFKA_VERSION = "4.4.0"  # newest Apache Kafka release; KAFKA_VERSION overrides
SCALA_VERSION = "2.13"
POM = Path(__file__).resolve().with_name("pom.xml")
# dlcdn serves the current releases, the archive every release ever made.
DOWNLOAD_URLS = ("https://dlcdn.apache.org/kafka", "https://archive.apache.org/dist/kafka")
DOWNLOAD_TIMEOUT_S = 60
MVN_TIMEOUT_S = 600
KAFKA_JAR = re.compile(rf"kafka_{re.escape(SCALA_VERSION)}-(?P<version>[0-9][^/]*?)\.jar$")


class JarsError(RuntimeError):
    """The Kafka jars could not be found or fetched; the message says what to do."""


@dataclass(frozen=True)
class Jars:
    classpath: str  # for java -cp
    version: str  # the Kafka version in it
    source: str  # where it came from, for `status` and error messages


def cache_dir(environ: Mapping[str, str] = os.environ) -> Path:
    base = environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "kafka-python-tutorial"


def version_of(paths: list[Path]) -> str | None:
    """The Kafka version, read from the name of the kafka_2.13-X.jar among ``paths``."""
    for path in paths:
        match = KAFKA_JAR.search(path.name)
        if match and not path.name.endswith(("-test.jar", "-sources.jar", "-javadoc.jar")):
            return match["version"]
    return None


def from_libs(libs: Path, source: str) -> Jars:
    jars = sorted(libs.glob("*.jar"))
    version = version_of(jars)
    if version is None:
        raise JarsError(f"no kafka_{SCALA_VERSION}-*.jar in {libs}: is that a Kafka release?")
    # A class path wildcard ("libs/*") is how Kafka's own bin/kafka-run-class.sh does it.
    return Jars(classpath=str(libs / "*"), version=version, source=source)


def from_maven(version: str, cache: Path, mvn: str) -> Jars:
    """Resolve the jars with Maven; the class path is cached per version."""
    cached = cache / f"classpath-{version}.txt"
    if not (cached.is_file() and all(Path(p).is_file() for p in _entries(cached))):
        cache.mkdir(parents=True, exist_ok=True)
        command = [
            mvn, "-q", "-B", "-f", str(POM), "dependency:build-classpath",
            f"-Dkafka.version={version}", f"-Dmdep.outputFile={cached}",
        ]
        try:
            result = subprocess.run(
                command, capture_output=True, text=True, timeout=MVN_TIMEOUT_S, check=False
            )
        except subprocess.TimeoutExpired:
            raise JarsError(f"mvn did not resolve Kafka {version} within {MVN_TIMEOUT_S} s") from None
        if result.returncode != 0 or not cached.is_file():
            cached.unlink(missing_ok=True)
            errors = [line for line in result.stdout.splitlines() if "[ERROR]" in line]
            reason = errors[0] if errors else f"exit code {result.returncode}"
            raise JarsError(f"mvn could not resolve Apache Kafka {version}: {reason}")
    paths = [Path(p) for p in _entries(cached)]
    return Jars(
        classpath=os.pathsep.join(map(str, paths)),
        version=version_of(paths) or version,
        source="Maven (broker/pom.xml)",
    )


def _entries(classpath_file: Path) -> list[str]:
    return [p for p in classpath_file.read_text().strip().split(os.pathsep) if p]


def expected_sha512(text: str) -> str:
    """The digest in a .sha512 file, in either format Apache publishes.

    ``sha512sum`` style: "<hex>  kafka_2.13-4.4.0.tgz"; ``gpg --print-md`` style:
    "kafka_2.13-4.4.0.tgz: 9D5C 8A... " in upper case, in groups, over several lines.
    """
    if ".tgz:" in text:
        digest = re.sub(r"\s", "", text.split(".tgz:", 1)[1])
    else:
        digest = text.split()[0] if text.split() else ""
    if not re.fullmatch(r"[0-9a-fA-F]{128}", digest):
        raise JarsError("the published .sha512 file has no SHA-512 digest in it")
    return digest.lower()


def from_download(version: str, cache: Path, base_urls: tuple[str, ...]) -> Jars:
    name = f"kafka_{SCALA_VERSION}-{version}"
    home = cache / name
    if not (home / "libs").is_dir():
        cache.mkdir(parents=True, exist_ok=True)
        archive = cache / f"{name}.tgz"
        errors = []
        for base in base_urls:
            url = f"{base.rstrip('/')}/{version}/{name}.tgz"
            try:
                _download(url, archive)
                digest = expected_sha512(_fetch_text(url + ".sha512"))
                break
            except (OSError, JarsError) as error:
                errors.append(f"{url}: {error}")
        else:
            archive.unlink(missing_ok=True)
            raise JarsError("could not download Apache Kafka: " + "; ".join(errors))
        actual = _sha512(archive)
        if actual != digest:
            archive.unlink()
            raise JarsError(
                f"{name}.tgz does not match its published SHA-512 (got {actual[:16]}..., "
                f"expected {digest[:16]}...): not using it"
            )
        staging = cache / f"{name}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        with tarfile.open(archive) as tar:
            tar.extractall(staging, filter="data")
        (staging / name).rename(home)
        shutil.rmtree(staging)
        archive.unlink()
    return from_libs(home / "libs", source=f"Apache Kafka release archive in {home}")


def _download(url: str, target: Path) -> None:
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
        with open(target, "wb") as out:
            shutil.copyfileobj(response, out)


def _fetch_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
        return response.read().decode("ascii", errors="replace")


def _sha512(path: Path) -> str:
    digest = hashlib.sha512()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def find(environ: Mapping[str, str] = os.environ) -> Jars:
    """The jars to run, by the rules in this module's docstring."""
    version = environ.get("KAFKA_VERSION") or DEFAULT_KAFKA_VERSION
    if environ.get("KAFKA_HOME"):
        libs = Path(environ["KAFKA_HOME"]) / "libs"
        if not libs.is_dir():
            raise JarsError(f"KAFKA_HOME={environ['KAFKA_HOME']} has no libs/ folder")
        return from_libs(libs, source=f"KAFKA_HOME ({environ['KAFKA_HOME']})")
    cache = cache_dir(environ)
    mvn = shutil.which("mvn", path=environ.get("PATH"))
    if mvn and not environ.get("KAFKA_DOWNLOAD_URL"):
        return from_maven(version, cache, mvn)
    urls = (environ["KAFKA_DOWNLOAD_URL"],) if environ.get("KAFKA_DOWNLOAD_URL") else DOWNLOAD_URLS
    return from_download(version, cache, urls)
