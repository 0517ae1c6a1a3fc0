#!/usr/bin/env python3
"""Checks the module rules ARCHITECTURE.md states, from the `use` lines of each crate's code
(tests left out): no import cycles between a crate's modules, and in sluice-gateway, the
stages and upstream rooms never import the spine or each other. Exits 1 and says why."""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "crates")
# (room, rooms it must never import)
GATEWAY_RULES = {
    "stages": {"spine", "upstream", "edge", "admin"},
    "upstream": {"spine", "stages", "edge", "admin"},
    "stream": {"spine", "stages", "upstream/dispatch", "edge", "admin"},
    "finish": {"spine", "stages", "edge", "admin", "flow"},
    "state": {"spine", "stages", "edge", "admin"},
    "response": {"spine", "stages", "upstream", "edge", "admin"},
}


def modules(src):
    """module path (tuple) -> file, for every .rs under src."""
    out = {}
    for dirpath, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, f), src)
            parts = rel[:-3].split(os.sep)
            if parts[-1] in ("mod", "lib", "main"):
                parts = parts[:-1]
            out[tuple(parts)] = rel
    return out


def code_of(path):
    text = open(path, encoding="utf-8").read()
    cut = re.search(r"^#\[cfg\(test\)\]\s*\n\s*mod tests", text, re.M)
    text = text[: cut.start()] if cut else text
    return re.sub(r"//[^\n]*", "", text)


def expand(prefix, body):
    """`a::{b, c::{d, e}}` -> [a::b, a::c::d, a::c::e]."""
    body = body.strip()
    if not body.startswith("{"):
        return [prefix + body]
    inner, depth, parts, cur = body[1:-1], 0, [], ""
    for ch in inner:
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        depth += ch == "{"
        depth -= ch == "}"
        cur += ch
    parts.append(cur)
    out = []
    for p in parts:
        p = p.strip()
        if not p:
            continue
        m = re.match(r"([\w:]*?)(::)?(\{.*\})$", p, re.S)
        if m and m.group(3):
            out += expand(prefix + m.group(1) + "::", m.group(3))
        else:
            out.append(prefix + p)
    return out


def references(code, here):
    refs = []
    for m in re.finditer(r"\buse\s+((?:crate|super)::[^;]+);", code, re.S):
        path = m.group(1)
        head, _, rest = path.partition("::")
        refs += [head + "::" + p for p in expand("", rest)]
    refs += re.findall(r"\b(?:crate|super)::[\w:]+", code)
    # `use child::item;` in a parent module (a path relative to it)
    for m in re.finditer(r"\buse\s+([a-z_]\w*)::([^;]+);", code, re.S):
        if m.group(1) not in ("crate", "super", "self", "std", "core", "alloc"):
            refs += ["self::" + m.group(1) + "::" + p for p in expand("", m.group(2))]
    out = set()
    for r in refs:
        parts = [p for p in re.split(r"::", r) if p and (p != "self" or r.startswith("self::"))]
        parts = [re.sub(r"\s+as\s+\w+$", "", p).strip() for p in parts]
        if parts[0] == "crate":
            parts = parts[1:]
        elif r.startswith("self::"):
            parts = list(here) + [p for p in r.split("::")[1:] if p]
        else:
            base = list(here)
            while parts and parts[0] == "super":
                base = base[:-1]
                parts = parts[1:]
            parts = base + parts
        out.add(tuple(parts))
    return out


def resolve(mods, path):
    for n in range(len(path), -1, -1):
        if tuple(path[:n]) in mods:
            return tuple(path[:n])
    return ()


def cycles(graph):
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]

    def strong(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    sys.setrecursionlimit(10000)
    for v in list(graph):
        if v not in index:
            strong(v)
    return out


def main():
    bad = []
    for crate in sorted(os.listdir(ROOT)):
        src = os.path.join(ROOT, crate, "src")
        if not os.path.isdir(src):
            continue
        mods = modules(src)
        graph = {}
        for mod, rel in mods.items():
            deps = set()
            for ref in references(code_of(os.path.join(src, rel)), mod):
                target = resolve(mods, ref)
                # The crate root composes (it declares every module and starts the tasks): not an arrow.
                if target != mod and target != ():
                    deps.add(target)
            graph[mod] = deps
        for comp in cycles(graph):
            names = sorted("::".join(c) for c in comp)
            bad.append(f"{crate}: import cycle between {', '.join(names)}")
        if crate == "sluice-gateway":
            for mod, deps in graph.items():
                for room, banned in GATEWAY_RULES.items():
                    if mod[:1] != (room,):
                        continue
                    for d in deps:
                        name = "/".join(d)
                        if any(name == b or name.startswith(b + "/") for b in banned):
                            bad.append(f"{crate}: {'::'.join(mod)} imports {'::'.join(d)} ({room} must not import {name.split('/')[0]})")
    for line in bad:
        print(line)
    if bad:
        sys.exit(1)
    print("layout: no import cycles; the gateway's rooms keep their rules")


if __name__ == "__main__":
    main()
