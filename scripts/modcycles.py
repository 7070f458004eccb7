#!/usr/bin/env python3
"""File-level import graph of one Rust crate and its cycles.

usage: modcycles.py CRATE_SRC_DIR [--edges]

An edge A -> B means file A names an item defined in file B through a `crate::`, `super::`,
`self::` or child-module path (in a `use` tree or inline in code). Paths through re-exports
(`pub use`, `pub(crate) use`) are followed to the file that defines the item. `mod x;`
declarations are not edges (the module tree is not an import). Test modules count too.
Cycles are the strongly connected components with more than one file.
"""
import os
import re
import sys

root = os.path.abspath(sys.argv[1])
show_edges = "--edges" in sys.argv

# module path (tuple) -> file
files = {}
for dirpath, _, names in os.walk(root):
    for n in names:
        if not n.endswith(".rs"):
            continue
        full = os.path.join(dirpath, n)
        rel = os.path.relpath(full, root)[:-3].split(os.sep)
        if rel == ["lib"] or rel == ["main"]:
            mod = ()
        elif rel[-1] == "mod":
            mod = tuple(rel[:-1])
        else:
            mod = tuple(rel)
        files[mod] = full


def strip(src):
    src = re.sub(r"//[^\n]*", "", src)
    src = re.sub(r"/\*.*?\*/", "", src, flags=re.S)
    src = re.sub(r'r#*"(?:.|\n)*?"#*', '""', src)
    src = re.sub(r'"(?:\\.|[^"\\])*"', '""', src)
    return src


texts = {m: strip(open(f).read()) for m, f in files.items()}


def expand(tree):
    """`a::{b, c::{d, self}}` -> [[a,b],[a,c,d],[a,c]]"""
    tree = tree.strip()
    out = []
    depth = 0
    # split top-level on '::{'
    i = tree.find("{")
    if i < 0:
        segs = [s.strip() for s in tree.split("::") if s.strip()]
        segs = [s.split(" as ")[0].strip() for s in segs]
        if segs and segs[-1] == "self":
            segs = segs[:-1]
        return [segs] if segs else []
    prefix = [s.strip() for s in tree[:i].split("::") if s.strip()]
    inner = tree[i + 1 : tree.rfind("}")]
    parts, cur = [], ""
    for ch in inner:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    for p in parts:
        if not p.strip():
            continue
        for sub in expand(p):
            out.append(prefix + sub)
        if p.strip() == "self":
            out.append(prefix)
    return out


def children(mod):
    return {m[-1] for m in files if len(m) == len(mod) + 1 and m[:-1] == mod}


def absolute(mod, segs):
    """Module-relative path -> absolute segments, or None for external crates."""
    if not segs:
        return None
    head = segs[0]
    if head == "crate":
        return list(segs[1:])
    if head in ("super", "self"):
        base = list(mod)
        rest = list(segs)
        while rest and rest[0] in ("super", "self"):
            if rest[0] == "super":
                base = base[:-1]
            rest = rest[1:]
        return base + rest
    if head in children(mod):
        return list(mod) + list(segs)
    return None


def reexports(mod):
    """name -> absolute path of what `mod` re-exports under that name."""
    out = {}
    for m in re.finditer(r"\bpub(?:\([^)]*\))?\s+use\s+([^;]+);", texts[mod]):
        for segs in expand(m.group(1)):
            a = absolute(mod, segs)
            if a:
                alias = m.group(1)
                out[segs[-1]] = a
    return out


def resolve(path, depth=0):
    """absolute segments -> file module that defines what the path names."""
    best = ()
    for k in range(len(path), -1, -1):
        if tuple(path[:k]) in files:
            best = tuple(path[:k])
            break
    rest = path[len(best) :]
    if rest and depth < 10:
        re_ = reexports(best)
        if rest[0] in re_ and re_[rest[0]][: len(best)] != list(best) + [rest[0]]:
            return resolve(re_[rest[0]] + rest[1:], depth + 1)
    return best


def inline_modules(text):
    """Splits out `mod name { ... }` blocks: [(name, body)], and the text without them."""
    blocks, out, i = [], "", 0
    for m in re.finditer(r"\bmod\s+(\w+)\s*\{", text):
        if m.start() < i:
            continue
        depth, j = 1, m.end()
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        out += text[i : m.start()]
        blocks.append((m.group(1), text[m.end() : j - 1]))
        i = j
    return blocks, out + text[i:]


def paths_of(mod, text):
    """Absolute paths named in `text`, read as the body of module `mod`."""
    blocks, text = inline_modules(text)
    found = []
    for inner, body in blocks:
        found.extend(paths_of(mod + (inner,), body))
    paths = []
    for m in re.finditer(r"\buse\s+([^;]+);", text):
        paths.extend(expand(m.group(1)))
    body = re.sub(r"\buse\s+[^;]+;", "", text)
    for m in re.finditer(r"(?<![\w:])((?:crate|super|self)(?:::\w+)+)", body):
        paths.append(m.group(1).split("::"))
    for child in children(mod):
        for m in re.finditer(r"(?<![\w:])(" + child + r"(?:::\w+)+)", body):
            paths.append(m.group(1).split("::"))
    for segs in paths:
        a = absolute(mod, segs)
        if a is not None:
            found.append(a)
    return found


edges = {m: set() for m in files}
for mod, text in texts.items():
    for a in paths_of(mod, text):
        target = resolve(a)
        if target != mod and target in files:
            edges[mod].add(target)


def name(m):
    return os.path.relpath(files[m], root)


# Tarjan SCC
index, low, stack, on, sccs = {}, {}, [], set(), []
counter = [0]


def visit(v):
    index[v] = low[v] = counter[0]
    counter[0] += 1
    stack.append(v)
    on.add(v)
    for w in edges[v]:
        if w not in index:
            visit(w)
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
        sccs.append(comp)


sys.setrecursionlimit(10000)
for v in sorted(files):
    if v not in index:
        visit(v)

if show_edges:
    for m in sorted(files, key=name):
        print(f"{name(m)} -> {', '.join(sorted(name(t) for t in edges[m])) or '-'}")
cycles = [c for c in sccs if len(c) > 1]
print(f"{len(files)} files, {sum(len(e) for e in edges.values())} edges, {len(cycles)} cycle(s)")
for c in cycles:
    members = set(c)
    print("cycle:", ", ".join(sorted(name(m) for m in c)))
    for m in sorted(c, key=name):
        for t in sorted(edges[m] & members, key=name):
            print(f"    {name(m)} -> {name(t)}")
sys.exit(1 if cycles else 0)
