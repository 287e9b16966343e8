#!/usr/bin/python3
"""Package.swift declares exactly what each target imports (issue 19): every module a target's
sources import is among its dependencies, and every dependency is imported (executables that a
test target runs are build-order dependencies and exempt). Exit 1 with one line per drift."""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Modules of the toolchain and the C library: never dependencies.
SYSTEM = {"Glibc", "Musl", "Foundation", "FoundationEssentials", "Dispatch", "Synchronization", "Testing", "XCTest"}


def targets(text):
    """(name, kind, dependencies) of each target in Package.swift (balanced parentheses)."""
    out = []
    for m in re.finditer(r"\.(target|executableTarget|testTarget|systemLibrary)\(", text):
        depth, i = 1, m.end()
        while depth and i < len(text):
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        body = text[m.end():i - 1]
        named = re.match(r"\s*name:\s*\"([^\"]+)\"", body)
        if not named:
            continue  # the fuzz targets, made in a loop (their dependencies are listed there)
        name = named.group(1)
        deps = []
        d = re.search(r"dependencies:\s*\[", body)
        if d:
            depth, j = 1, d.end()
            while depth and j < len(body):
                depth += {"[": 1, "]": -1}.get(body[j], 0)
                j += 1
            listed = body[d.end():j - 1]
            deps += re.findall(r"\.product\(name:\s*\"([^\"]+)\"", listed)
            deps += re.findall(r"\"([^\"]+)\"", re.sub(r"\.product\([^)]*\)", "", listed))
        out.append((name, m.group(1), deps))
    return out


def imports(directory):
    found = set()
    for dirpath, _, files in os.walk(directory):
        for f in files:
            if f.endswith(".swift"):
                with open(os.path.join(dirpath, f), encoding="utf-8") as fh:
                    for line in fh:
                        m = re.match(r"\s*(?:@testable\s+|@_implementationOnly\s+|(?:public|internal|package)\s+)?import\s+(\w+)", line)
                        if m:
                            found.add(m.group(1))
    return found


def main():
    with open(os.path.join(ROOT, "Package.swift"), encoding="utf-8") as fh:
        text = fh.read()
    all_targets = targets(text)
    executables = {n for n, k, _ in all_targets if k == "executableTarget"}
    problems = []
    for name, kind, deps in all_targets:
        if kind == "systemLibrary":
            continue
        directory = os.path.join(ROOT, "Tests" if kind == "testTarget" else "Sources", name)
        if not os.path.isdir(directory):
            continue
        used = imports(directory) - SYSTEM - {name}
        declared = set(deps)
        for module in sorted(used - declared):
            problems.append(f"Package.swift: target {name} imports {module} but does not declare it; add it to its dependencies")
        for module in sorted(declared - used - (executables if kind == "testTarget" else set())):
            problems.append(f"Package.swift: target {name} declares {module} but never imports it; remove it from its dependencies")
    for p in problems:
        print(p, file=sys.stderr)
    if not problems:
        print(f"amp: Package.swift declares exactly what its {len(all_targets)} targets import", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
