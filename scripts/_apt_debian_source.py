#!/usr/bin/env python3
"""Print a deb822 `deb-src` entry for Debian trixie, derived from the machine's apt sources.

The URI and keyring are taken from the first `deb` entry that serves Debian's main archive (not
its -security or -updates suites), in /etc/apt/sources.list.d/*.sources (deb822) or the one-line
/etc/apt/sources.list{,.d/*.list} files, so the entry goes through whatever mirror the machine
already uses. Exits 1 when no such entry exists.
"""

from __future__ import annotations

import glob
import re
import sys

SUITE = "trixie"


def deb822_entries(text: str) -> list[dict[str, str]]:
    entries, cur, last = [], {}, None
    for line in [*text.splitlines(), ""]:
        if not line.strip():
            if cur:
                entries.append(cur)
            cur, last = {}, None
        elif line.startswith("#"):
            continue
        elif line[0] in " \t" and last:
            cur[last] += "\n" + line.strip()
        elif ":" in line:
            last, _, value = line.partition(":")
            last = last.strip().lower()
            cur[last] = value.strip()
    return entries


def one_line_entries(text: str) -> list[dict[str, str]]:
    entries = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        m = re.match(r"^(deb)\s+(?:\[([^\]]*)\]\s+)?(\S+)\s+(\S+)", line)
        if m:
            opts = dict(o.split("=", 1) for o in (m.group(2) or "").split() if "=" in o)
            entries.append(
                {
                    "types": "deb",
                    "uris": m.group(3),
                    "suites": m.group(4),
                    "signed-by": opts.get("signed-by", ""),
                }
            )
    return entries


def is_debian_main(entry: dict[str, str]) -> bool:
    if "deb" not in entry.get("types", "").split():
        return False
    if entry.get("enabled", "yes").lower() == "no":
        return False
    suites = entry.get("suites", "").split()
    # The main archive: a plain release suite, not -security / -updates / -backports.
    return any("-" not in s and "/" not in s for s in suites) and "debian" in entry.get("uris", "")


def main() -> int:
    entries: list[dict[str, str]] = []
    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        with open(path, encoding="utf-8", errors="replace") as f:
            entries += deb822_entries(f.read())
    for path in ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*.list"))]:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                entries += one_line_entries(f.read())
        except FileNotFoundError:
            pass
    for entry in entries:
        if is_debian_main(entry):
            uri = entry["uris"].split()[0]
            keyring = entry.get("signed-by", "").strip()
            lines = ["Types: deb-src", f"URIs: {uri}", f"Suites: {SUITE}", "Components: main"]
            if keyring and "\n" not in keyring:
                lines.append(f"Signed-By: {keyring}")
            elif not keyring:
                lines.append("Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg")
            else:  # an inline key block cannot be reused as a path; fall back to the archive keyring
                lines.append("Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg")
            print("\n".join(lines))
            return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
