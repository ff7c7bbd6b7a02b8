"""Pages made at build time (mkdocs-gen-files runs this from mkdocs.yml).

- ``reference.md``: every setting of a run, read from the config dataclasses' docstrings (their
  ``Attributes:`` sections, parsed by griffe's Google-style parser), walked from ``AgoraConfig`` down so
  that a class moved to another module is still found. A setting with no description stops the build:
  each setting is documented once, in its class, and this page is that documentation.
- ``benchmarks.md``: ``benches/RESULTS.md`` as ``make bench`` last wrote it.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import sys
import typing
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the checkout's packages, also when mkdocs runs outside an editable install


def _markdown(text: str) -> str:
    """Docstring markup (reST's double backticks) as Markdown, on one line for a table cell."""
    return " ".join(text.replace("``", "`").split()).replace("|", "\\|")


def _attributes(cls: type) -> tuple[str, dict[str, str]]:
    """The class's summary and its ``Attributes:`` entries by name, its base classes' included."""
    import griffe

    summary, described = "", {}
    for klass in reversed(cls.__mro__):  # a subclass's entry wins over its base's
        if not dataclasses.is_dataclass(klass):
            continue
        for section in griffe.Docstring(inspect.cleandoc(klass.__doc__ or ""), parser="google").parse():
            if section.kind is griffe.DocstringSectionKind.text and klass is cls:
                summary = summary or section.value
            elif section.kind is griffe.DocstringSectionKind.attributes:
                described |= {attr.name: attr.description for attr in section.value}
    return summary, described


def _summary(cls: type) -> str:
    return _attributes(cls)[0].split("\n\n")[0]


def _nested(tp: object) -> type | None:
    """The config dataclass a field holds, alone or as the items of a list."""
    if dataclasses.is_dataclass(tp):
        return tp  # type: ignore[return-value]
    for arg in typing.get_args(tp):
        if dataclasses.is_dataclass(arg):
            return arg
    return None


def _default(field: dataclasses.Field, key: str) -> str:
    if field.default is not dataclasses.MISSING:
        value = field.default
    elif field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
    else:
        return "required"
    if dataclasses.is_dataclass(value):
        from markdown.extensions.toc import slugify  # the ids mkdocs gives headings

        return f"[see below](#{slugify(key, '-')})"
    return "empty" if value == "" else f"`{_hydra(value)}`"


def _hydra(value: object) -> str:
    """A default as it is written in an override (`true`, `null`, `[a, b]`)."""
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    if value == "":
        return "''"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_hydra(v) for v in value) + "]"
    if dataclasses.is_dataclass(value):
        return "{" + ", ".join(f"{f.name}: {_hydra(getattr(value, f.name))}" for f in dataclasses.fields(value)) + "}"
    return str(value)


def experiment_sections() -> list[tuple[str, str, type]]:
    """``(experiment, "study.<key>.", config class)`` of every registered experiment with settings of its own: they
    live in its study node (chosen by ``experiment=<name>``), not in ``AgoraConfig``'s default study."""
    from sim.experiments.registry import experiments

    return [(name, f"study.{e.key}.", e.config) for name, e in sorted(experiments().items()) if e.key and e.config]


def reference_markdown() -> str:
    """The reference page: one table per config class, keys as they are written on the command line."""
    from sim.config import AgoraConfig

    undocumented: list[str] = []
    tables = _section("", AgoraConfig, undocumented)
    for name, prefix, cls in experiment_sections():
        if f"## `{prefix.rstrip('.')}`" not in tables:  # not already under AgoraConfig's default study
            part = _section(prefix, cls, undocumented)
            part[2] = f"Only with `experiment={name}`. " + part[2]
            tables += part
    if undocumented:
        raise SystemExit("gen_pages.py: settings with no description in their class's Attributes: "
                         + ", ".join(undocumented))
    modules = sorted({m for m in re.findall(r"^`([\w.]+)\.\w+`: ", "\n".join(tables), flags=re.M)})
    files = ", ".join(f"`{m.replace('.', '/')}.py`" for m in modules)
    return "\n".join([
        "# Reference: every setting",
        "",
        f"Generated when the site is built, from the docstrings of the config dataclasses ({files}), where",
        "each setting is documented once. Every key is a Hydra override (`agora population.size=32 sim.steps=3`);",
        "`agora --help` prints the composed config.",
        "",
        *tables,
    ])


def _section(prefix: str, cls: type, undocumented: list[str]) -> list[str]:
    """One class's table, then its nested classes' tables, depth first (a group's subgroups follow it)."""
    out: list[str] = []
    nested: list[tuple[str, type]] = []
    described = _attributes(cls)[1]
    hints = typing.get_type_hints(cls)
    title = f"`{prefix.rstrip('.')}`" if prefix else "top level"
    out += [f"## {title}", "", f"`{cls.__module__}.{cls.__qualname__}`: {_markdown(_summary(cls))}", "",
            "| key | default | meaning |", "|---|---|---|"]
    for field in dataclasses.fields(cls):
        key = prefix + field.name
        inner = _nested(hints[field.name])
        # a field holding a config class may leave its description to that class ("see their classes")
        meaning = described.get(field.name) or (_summary(inner) if inner else "")
        if not meaning.strip():
            undocumented.append(f"{cls.__qualname__}.{field.name}")
        if inner is not None:  # a list's items: `study.norms.schedule[].name`
            nested.append((key + ("." if dataclasses.is_dataclass(hints[field.name]) else "[]."), inner))
        out.append(f"| `{key}` | {_default(field, key)} | {_markdown(meaning)} |")
    out.append("")
    for key, inner in nested:
        out += _section(key, inner, undocumented)
    return out


def main() -> None:
    import mkdocs_gen_files

    with mkdocs_gen_files.open("reference.md", "w") as f:
        f.write(reference_markdown())
    with mkdocs_gen_files.open("benchmarks.md", "w") as f:
        f.write((ROOT / "benches" / "RESULTS.md").read_text())


if __name__ in ("__main__", "<run_path>"):  # mkdocs-gen-files runs the script with runpy
    main()
