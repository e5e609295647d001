"""Sphinx configuration of the fastmsg documentation site.

Build it with the package installed (the API pages are read from the installed modules):

    pip install ".[docs]"
    python -m sphinx -W --keep-going docs-site build/site      # then open build/site/index.html

tests/test_docs_site.py runs the same build, warnings as errors, in the test suite.
"""

import ast
import importlib.util
import pathlib
import re

import docutils.frontend
import docutils.parsers.rst
import docutils.utils

import fastmsg

project = "fastmsg"
author = "The fastmsg developers"
copyright = "the fastmsg developers"
version = release = fastmsg.__version__

extensions = ["myst_parser", "sphinx.ext.autodoc"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]
myst_heading_anchors = 3  # [text](page.md#a-heading) links, checked at build time
myst_enable_extensions = ["deflist"]

html_theme = "alabaster"
html_title = f"fastmsg {release}"
html_theme_options = {"description": "a fast, checked message transport for Python", "fixed_sidebar": True}
html_static_path = []

# The API reference is read from the installed package: docstrings and, where the compiled
# classes carry no signature of their own, the .pyi stubs installed beside them. Nothing there
# may fail the build: a missing docstring leaves an entry without text, and a docstring that is
# not valid reStructuredText is shown as written (a literal block) rather than as a warning.
autodoc_default_options = {"members": True, "undoc-members": True, "member-order": "bysource"}
autodoc_typehints = "signature"
autodoc_preserve_defaults = True  # a default shown as written (_OWN_LINGER), not as its repr
autodoc_inherit_docstrings = False
autoclass_content = "class"


def _stub_node(obj):
    """The ast node of `obj` (a class, or a function or method of one) in its module's .pyi."""
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if not module or not qualname:
        return None
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    origin = pathlib.Path(spec.origin)
    stub = origin.with_name(origin.name.split(".")[0] + ".pyi")
    try:
        tree = ast.parse(stub.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return None
    node = tree
    for part in qualname.split("."):
        node = next((n for n in getattr(node, "body", ())
                     if isinstance(n, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == part),
                    None)
        if node is None:
            return None
    return node


def _stub_signature(obj, what):
    node = _stub_node(obj)
    if isinstance(node, ast.ClassDef):  # its __init__, else its __new__
        made = {n.name: n for n in node.body if isinstance(n, ast.FunctionDef)}
        node = made.get("__init__", made.get("__new__"))
        what = "method"
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return None
    args = node.args
    static = any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in node.decorator_list)
    if what == "method" and not static and (args.posonlyargs or args.args):  # drop self (or cls)
        if args.posonlyargs:
            args.posonlyargs = args.posonlyargs[1:]
        else:
            args.args = args.args[1:]
    returns = ast.unparse(node.returns) if node.returns is not None and node.name not in ("__init__", "__new__") else None
    return f"({ast.unparse(args)})", returns


# What a compiled (Cython) signature says in C that a reader of Python needs not see: the
# argument's C type before its name, and `self` first.
_C_TYPES = re.compile(r"\b(?:int|bint|long|double|float|str|bytes|object|Py_ssize_t|size_t|u?int(?:8|16|32|64)_t"
                      r"|Context|Sender|Receiver|Message)\s+(?=\w)")
_SELF = re.compile(r"^\(self(?:, |\))")


def _compiled(obj):
    module = getattr(obj, "__module__", None) or ""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return False
    return bool(spec and spec.origin and not spec.origin.endswith(".py"))


def _signature(app, what, name, obj, options, signature, return_annotation):
    # Only a signature autodoc found is replaced: where it found none, Sphinx 9 cannot take one
    # from this event (it raises), so such an entry keeps its name and docstring alone.
    if signature is None or what not in ("class", "exception", "method", "function") or not _compiled(obj):
        return None
    found = _stub_signature(obj, what)  # the stub's, where there is one: Python types, no C
    if found is not None:
        return found
    signature = _SELF.sub(lambda m: "(" if m.group(0).endswith(", ") else "()", signature)
    return _C_TYPES.sub("", signature), return_annotation


_RST_SETTINGS = None


def _rst_problems(text):
    """True if docutils reports anything but unknown roles and directives (Sphinx knows those)."""
    global _RST_SETTINGS
    if _RST_SETTINGS is None:
        _RST_SETTINGS = docutils.frontend.get_default_settings(docutils.parsers.rst.Parser)
        _RST_SETTINGS.report_level = 5
        _RST_SETTINGS.halt_level = 5
    document = docutils.utils.new_document("<docstring>", _RST_SETTINGS)
    problems = []

    def observe(message):
        if message["level"] >= 2:
            said = message.astext()
            if "Unknown interpreted text role" not in said and "Unknown directive type" not in said \
                    and 'No role entry for' not in said and 'No directive entry for' not in said:
                problems.append(said)

    document.reporter.attach_observer(observe)
    docutils.parsers.rst.Parser().parse(text, document)
    return problems


def _docstring(app, what, name, obj, options, lines):
    if lines and any(line.strip() for line in lines) and _rst_problems("\n".join(lines)):
        lines[:] = ["::", ""] + ["    " + line for line in lines] + [""]


def setup(app):
    # docs/protocol.md's test vectors are fenced as ```vector: hex dumps, shown as plain text.
    from pygments.lexers.special import TextLexer
    app.add_lexer("vector", TextLexer)
    app.connect("autodoc-process-signature", _signature)
    app.connect("autodoc-process-docstring", _docstring)

# fastmsg.Sender is fastmsg._core.transport.Sender, and fastmsg.asyncio has a Sender of its own:
# a bare `Sender` in a signature has more than one target, which is not an error of the page.
suppress_warnings = ["ref.python"]
