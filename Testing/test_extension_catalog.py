"""The Extensions Index's checks of a new extension, run here on this repository (no network, no clone).

The index (github.com/Slicer/ExtensionsIndex, scripts/check_description_files.py and its pre-commit configuration)
checks: the description file against the catalog-entry schema; prettier formatting with every array wrapped (one item
per line); a known category; a repository name containing "Slicer"; an https/git scm_url; in the top-level
CMakeLists.txt a project() named like the description file, an EXTENSION_ICONURL and non-empty
EXTENSION_SCREENSHOTURLS that download as images; and a licence file in the repository root. Here a
raw.githubusercontent URL of this repository must name a file that exists in it and is a PNG, JPEG or GIF.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
DESCRIPTION = ROOT / "Resources" / "StrokeSeg.json"
CMAKE = ROOT / "CMakeLists.txt"
RAW_PREFIX = "https://raw.githubusercontent.com/strokeseg/SlicerStrokeSeg/main/"

# Catalog entry schema v1.0.2 (Slicer/Schemas): required keys, and the type of every allowed key.
SCHEMA_REQUIRED = {"$schema", "category", "scm_url"}
SCHEMA_TYPES = {"$schema": str, "category": str, "scm_url": str, "scm_revision": str, "scm_type": str,
                "build_dependencies": list, "dicom_support_rule": str, "build_subdirectory": str, "enabled": bool,
                "tier": int}
# Categories the index accepts (its ACCEPTED_EXTENSION_CATEGORIES), those near this extension's field.
ACCEPTED_CATEGORIES = {"Analysis", "Diffusion", "Filtering", "Informatics", "Neuroimaging", "Quantification",
                       "Registration", "Segmentation", "Utilities"}
LICENCE_NAMES = ("LICENSE", "LICENCE", "License.txt", "license.txt", "LICENSE.txt", "COPYING", "COPYING.txt")
IMAGE_MAGIC = {".png": b"\x89PNG\r\n\x1a\n", ".jpg": b"\xff\xd8\xff", ".jpeg": b"\xff\xd8\xff", ".gif": b"GIF8"}


def cmake_text() -> str:
    return CMAKE.read_text(encoding="utf-8")


def description() -> dict:
    return json.loads(DESCRIPTION.read_text(encoding="utf-8"))


def test_description_follows_the_schema() -> None:
    entry = description()
    assert SCHEMA_REQUIRED <= set(entry), SCHEMA_REQUIRED - set(entry)
    assert set(entry) <= set(SCHEMA_TYPES), set(entry) - set(SCHEMA_TYPES)
    for key, value in entry.items():
        assert isinstance(value, SCHEMA_TYPES[key]) and not (SCHEMA_TYPES[key] is int and isinstance(value, bool)), key
    assert entry["$schema"].startswith("https://raw.githubusercontent.com/Slicer/Slicer/main/Schemas/"
                                       "slicer-extension-catalog-entry-schema-v1.0.")
    assert entry.get("scm_type", "git") in ("git", "local")
    assert 1 <= entry.get("tier", 1) <= 5
    assert all(isinstance(d, str) for d in entry.get("build_dependencies", []))


def test_description_is_formatted_as_the_index_formats_it() -> None:
    """prettier with multiline arrays (wrap threshold 0) and the index's whitespace hooks."""
    text = DESCRIPTION.read_text(encoding="utf-8")
    assert text == json.dumps(json.loads(text), indent=2, ensure_ascii=False) + "\n"
    assert "\t" not in text and "\r" not in text
    assert not any(line != line.rstrip() for line in text.splitlines())
    for array in re.findall(r"\[[^\]]*\]", text):
        assert array.count("\n") == array.count(",") + 2, f"array not wrapped one item per line: {array!r}"


def test_category_and_repository_name() -> None:
    entry = description()
    assert entry["category"] in ACCEPTED_CATEGORIES
    cmake_category = re.search(r'set\(EXTENSION_CATEGORY\s+"([^"]+)"\)', cmake_text()).group(1)
    assert cmake_category == entry["category"]
    url = urlsplit(entry["scm_url"])
    assert "://" in entry["scm_url"] and url.scheme in ("git", "https")
    repository = Path(url.path).stem
    assert "slicer" in repository.lower(), repository
    homepage = re.search(r'set\(EXTENSION_HOMEPAGE\s+"([^"]+)"\)', cmake_text()).group(1)
    assert homepage == entry["scm_url"] and RAW_PREFIX.startswith(f"https://raw.githubusercontent.com{url.path}/")


def test_cmake_project_is_named_like_the_description_file() -> None:
    names = re.findall(r"project\s*\(\s*([^\s\)\n\r]+)", cmake_text(), re.IGNORECASE)
    assert names and names[0].strip("\"'") == DESCRIPTION.stem


def test_cmake_minimum_is_the_slicer_5_10_template_range() -> None:
    assert re.search(r"^cmake_minimum_required\(VERSION 3\.20\.6\.\.\.3\.22\.6 FATAL_ERROR\)$", cmake_text(), re.M)


def repository_file(url: str) -> Path:
    assert url.startswith(RAW_PREFIX), f"{url} is not a file of this repository's main branch"
    path = ROOT / url[len(RAW_PREFIX):]
    assert path.is_file(), f"{url} points at {path}, which does not exist"
    magic = IMAGE_MAGIC.get(path.suffix.lower())
    assert magic is not None and path.read_bytes().startswith(magic), f"{path} is not a PNG, JPEG or GIF"
    return path


def test_icon_and_screenshot_urls_point_at_images_in_the_repository() -> None:
    text = cmake_text()
    icons = re.findall(r'set\s*\(EXTENSION_ICONURL\s*"([^"]+)"[ ]*\)', text, re.IGNORECASE)
    assert icons and icons[0].startswith("http")
    repository_file(icons[0].strip())
    # The index's pattern requires the closing parenthesis right after the quoted list.
    screenshots = re.findall(r'set\s*\(EXTENSION_SCREENSHOTURLS\s*"([^"]+)"\)', text, re.IGNORECASE)
    assert screenshots, "EXTENSION_SCREENSHOTURLS is missing or empty"
    urls = screenshots[0].split()
    assert urls and all(url.startswith("http") for url in urls)
    for url in urls:
        repository_file(url)


def test_licence_file_in_the_repository_root() -> None:
    found = [name for name in LICENCE_NAMES if (ROOT / name).is_file()]
    assert found and len((ROOT / found[0]).read_text(encoding="utf-8")) > 100
