"""Installs the console's front-end assets (htmx, Chart.js, Pico CSS) from the npm registry
without node or npm: `python -m api.console.assets` (run by `make setup`).

`assets.lock.json` pins each package to a tarball on registry.npmjs.org and the registry's
own `integrity` (an SRI sha512 hash). A tarball whose hash differs is refused before
anything is extracted, and only the files the lock lists are written, into
`static/vendor/` (git-ignored). What was installed is stamped in `vendor/.installed.json`,
so running it again is instant and needs no network. Nothing is fetched at run time: the
console serves these files itself, never from a CDN.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import io
import json
import os
import sys
import tarfile
import urllib.request
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from pydantic import BaseModel, Field

HERE = Path(__file__).parent
LOCK_FILE = HERE / "assets.lock.json"
VENDOR_DIR = HERE / "static" / "vendor"
STAMP_FILE = ".installed.json"
REGISTRY_HOST = "registry.npmjs.org"
DOWNLOAD_TIMEOUT_S = 120


class AssetError(RuntimeError):
    """The lock, a download or a tarball is not what it must be; nothing of it was installed."""


class Package(BaseModel):
    name: str
    version: str
    license: str
    tarball: str
    integrity: str = Field(pattern=r"^sha512-[A-Za-z0-9+/]+={0,2}$")
    files: dict[str, str] = Field(min_length=1, description="tarball member -> vendor path")


class Lock(BaseModel):
    about: str = ""
    packages: list[Package]


def load_lock(path: Path = LOCK_FILE) -> Lock:
    return Lock.model_validate_json(path.read_bytes())


def download(url: str) -> bytes:
    """A tarball from the npm registry (https only: the integrity check is the real guard,
    but nothing else should be fetched by a setup step)."""
    parts = urlsplit(url)
    if parts.scheme != "https" or parts.hostname != REGISTRY_HOST:
        raise AssetError(f"refusing to download {url}: only https://{REGISTRY_HOST}/ is allowed")
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
        data: bytes = response.read()
    return data


def verify(data: bytes, integrity: str, what: str) -> None:
    """Raises AssetError unless `data` has the SRI `integrity` (sha512-<base64>)."""
    algorithm, _, expected = integrity.partition("-")
    if algorithm != "sha512":
        raise AssetError(f"{what}: unsupported integrity {integrity!r} (sha512 expected)")
    actual = base64.b64encode(hashlib.sha512(data).digest()).decode()
    if not hmac.compare_digest(actual, expected):
        raise AssetError(
            f"{what}: integrity mismatch (expected sha512-{expected}, got sha512-{actual}); "
            "the download is not the package the lock pins: nothing was installed"
        )


def _target(dest: Path, relative: str) -> Path:
    path = PurePosixPath(relative)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise AssetError(f"refusing to write {relative!r}: not a path inside the vendor folder")
    return dest.joinpath(*path.parts)


def extract(data: bytes, package: Package, dest: Path) -> None:
    """Writes the listed members of a verified tarball under `dest` (each file atomically)."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        contents: dict[str, bytes] = {}
        for member_name in package.files:
            try:
                member = archive.getmember(member_name)
            except KeyError:
                raise AssetError(f"{package.name}: {member_name} is not in the tarball") from None
            handle = archive.extractfile(member) if member.isfile() else None
            if handle is None:
                raise AssetError(f"{package.name}: {member_name} is not a regular file")
            contents[member_name] = handle.read()
    for member_name, relative in package.files.items():
        target = _target(dest, relative)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        partial.write_bytes(contents[member_name])
        os.replace(partial, target)


def _stamp(dest: Path) -> dict[str, str]:
    try:
        stamp: dict[str, str] = json.loads((dest / STAMP_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return stamp


def _installed(package: Package, dest: Path, stamp: dict[str, str]) -> bool:
    return stamp.get(package.name) == package.integrity and all(
        _target(dest, relative).is_file() for relative in package.files.values()
    )


def install(
    lock: Lock,
    dest: Path = VENDOR_DIR,
    fetch: Callable[[str], bytes] = download,
) -> list[str]:
    """Installs every package of the lock not installed yet; returns their names."""
    dest.mkdir(parents=True, exist_ok=True)
    stamp = _stamp(dest)
    done = []
    for package in lock.packages:
        if _installed(package, dest, stamp):
            continue
        what = f"{package.name}@{package.version}"
        data = fetch(package.tarball)
        verify(data, package.integrity, what)
        extract(data, package, dest)
        stamp[package.name] = package.integrity
        (dest / STAMP_FILE).write_text(json.dumps(stamp, indent=2, sort_keys=True) + "\n")
        done.append(what)
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m api.console.assets", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--lock", type=Path, default=LOCK_FILE, help="the lock file")
    parser.add_argument("--dest", type=Path, default=VENDOR_DIR, help="where files go")
    args = parser.parse_args(argv)
    try:
        done = install(load_lock(args.lock), args.dest)
    except (AssetError, OSError) as exc:
        print(f"console assets: {exc}", file=sys.stderr)
        return 1
    print("console assets: " + (f"installed {', '.join(done)}" if done else "up to date"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
