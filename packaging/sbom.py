#!/usr/bin/env python3
"""A CycloneDX SBOM (JSON, spec 1.6) of every wheel in an offline bundle.

    sbom.py --app-wheel dist/vigatra-X-py3-none-any.whl --wheels offline-wheels/ --target cp311-x86_64 --out FILE

Each component is one wheel file exactly as shipped: name and version (from the wheel's own
METADATA), its package URL (pkg:pypi/...), the SHA-256 of the file, the licence the wheel declares
(License-Expression, else its OSI classifiers, else the License field), and the wheel's file name
and platform tags as properties, so an auditor can match the SBOM to the bytes on the server.
Built with cyclonedx-python-lib and checked against the CycloneDX JSON schema before it is written.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

from cyclonedx.model import HashAlgorithm, HashType, Property
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.license import DisjunctiveLicense, LicenseExpression
from cyclonedx.output import make_outputter
from cyclonedx.schema import OutputFormat, SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packageurl import PackageURL

SCHEMA = SchemaVersion.V1_6


def wheel_metadata(path: Path) -> dict[str, list[str]]:
    with zipfile.ZipFile(path) as wheel:
        name = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1)
        message = Parser().parsestr(wheel.read(name).decode("utf-8", "replace"), headersonly=True)
    out: dict[str, list[str]] = {}
    for key, value in message.items():
        out.setdefault(key, []).append(value)
    return out


def licenses(meta: dict[str, list[str]]) -> list[LicenseExpression | DisjunctiveLicense]:
    expression = (meta.get("License-Expression") or [""])[0].strip()
    if expression:
        return [LicenseExpression(expression)]
    found = [c.split("::")[-1].strip() for c in meta.get("Classifier", []) if c.startswith("License ::")]
    found = [name for name in found if name and name != "OSI Approved"]
    if found:
        return [DisjunctiveLicense(name=name) for name in found]
    text = (meta.get("License") or [""])[0].strip().splitlines()
    return [DisjunctiveLicense(name=text[0][:200])] if text and text[0] else []


def component(path: Path, *, kind: ComponentType = ComponentType.LIBRARY) -> Component:
    meta = wheel_metadata(path)
    name, version = meta["Name"][0], meta["Version"][0]
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    tags = path.name.removesuffix(".whl").split("-")[-3:]
    return Component(
        type=kind, name=name, version=version,
        purl=PackageURL("pypi", name=name.lower().replace("_", "-"), version=version,
                        qualifiers={"file_name": path.name}),
        bom_ref=f"{name}=={version}",
        hashes=[HashType(alg=HashAlgorithm.SHA_256, content=digest)],
        licenses=licenses(meta),
        description=(meta.get("Summary") or [""])[0] or None,
        properties=[Property(name="vigatra:wheel", value=path.name),
                    Property(name="vigatra:wheel-tags", value="-".join(tags))],
    )


def build(app_wheel: Path, wheels: list[Path], target: str) -> str:
    bom = Bom()
    app = component(app_wheel, kind=ComponentType.APPLICATION)
    app.properties.add(Property(name="vigatra:bundle-target", value=target))
    bom.metadata.component = app
    for wheel in sorted(wheels):
        dependency = component(wheel)
        bom.components.add(dependency)
        bom.register_dependency(app, [dependency])
    text = make_outputter(bom, OutputFormat.JSON, SCHEMA).output_as_string(indent=2)
    error = JsonStrictValidator(SCHEMA).validate_str(text)
    if error is not None:
        raise SystemExit(f"sbom.py: the SBOM does not validate against CycloneDX {SCHEMA.to_version()}: {error}")
    return text + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--app-wheel", required=True, type=Path)
    parser.add_argument("--wheels", required=True, type=Path, help="directory of dependency wheels")
    parser.add_argument("--target", required=True, help="e.g. cp311-x86_64")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    args.out.write_text(build(args.app_wheel, sorted(args.wheels.glob("*.whl")), args.target))
    return 0


if __name__ == "__main__":
    sys.exit(main())
