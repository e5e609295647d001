"""The documentation site (docs-site/): it builds, warnings as errors, and its reference pages
list everything the code has (stats() keys, constructor options, command-line options), so that
they cannot fall behind it."""

import ast
import html
import inspect
import pathlib
import re
import subprocess
import sys

import pytest

import fastmsg

ROOT = pathlib.Path(__file__).resolve().parents[1]
SITE = ROOT / "docs-site"
TRANSPORT_SRC = ROOT / "src" / "fastmsg" / "_core" / "_transport"
HAS_TRANSPORT = hasattr(fastmsg, "Sender") and hasattr(fastmsg, "Receiver")

needs_site = pytest.mark.skipif(not SITE.is_dir(), reason="docs-site/ is not in this tree")
needs_transport = pytest.mark.skipif(not HAS_TRANSPORT, reason="the transport is not in this build")


def page(name):
    return (SITE / name).read_text(encoding="utf-8")


def sections(text):
    """{'## heading' title: its text} of a Markdown page."""
    parts = re.split(r"^## +(.+)$", text, flags=re.M)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)}


def table_rows(text):
    """{first cell without its backquotes: the whole row} of the Markdown tables in `text`."""
    rows = {}
    for line in text.splitlines():
        m = re.match(r"\|\s*`([^`]+)`\s*\|", line)
        if m:
            rows[m.group(1)] = line
    return rows


@needs_site
@needs_transport
def test_site_builds_with_warnings_as_errors(tmp_path):
    pytest.importorskip("sphinx", reason="Sphinx is not installed (the 'docs' extra)")
    pytest.importorskip("myst_parser", reason="myst-parser is not installed (the 'docs' extra)")
    out = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-E", "-q", "-b", "html",
                        "-d", str(tmp_path / "doctrees"), str(SITE), str(out)],
                       capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stderr.strip() == "", r.stderr  # -q: warnings only, and there were none
    for name in ("index", "quickstart", "delivery", "messages", "concurrency", "requests", "balancer", "security",
                 "options", "stats", "cli", "benchmarks", "api", "contributing", "design/architecture",
                 "design/protocol", "design/threat-model"):
        assert (out / f"{name}.html").is_file(), name
    api = (out / "api.html").read_text(encoding="utf-8")
    # the reference was extracted from the installed package: signatures and docstrings
    for anchor in ("fastmsg.Sender", "fastmsg.Sender.send", "fastmsg.Receiver.recv_many", "fastmsg.Message.reply",
                   "fastmsg.Balancer.route", "fastmsg.poll", "fastmsg.asyncio.Sender.request", "fastmsg.crc32c",
                   "fastmsg.MessageTooLarge", "fastmsg.testing.FaultProxy"):
        assert f'id="{anchor}"' in api, anchor
    signatures = {m.group(1): html.unescape(" ".join(re.sub(r"<[^>]+>", "", m.group(2)).split()))
                  for m in re.finditer(r'<dt class="sig sig-object py" id="([^"]+)">(.*?)</dt>', api, flags=re.S)}
    assert "hwm_bytes" in signatures["fastmsg.Sender"]  # the Sender's signature
    assert "self" not in signatures["fastmsg.Sender.send"]
    assert "int" in signatures["fastmsg.crc32c"]  # annotations, as the installed .pyi stub has them
    assert "Queues one message" in api  # Sender.send's docstring
    # the design notes are included whole
    architecture = (out / "design" / "architecture.html").read_text(encoding="utf-8")
    assert "Readiness notification" in architecture and "The hash construction" in architecture


@needs_site
@needs_transport
def test_stats_page_lists_every_key_of_live_endpoints():
    with fastmsg.Receiver("tcp://127.0.0.1:0") as rx, fastmsg.Sender(rx.endpoint) as tx:
        tx.send(b"x")
        with rx.recv(timeout=10) as msg:
            assert bytes(msg) == b"x"
        assert tx.flush(timeout=10)
        sender_keys, receiver_keys = set(tx.stats()), set(rx.stats())
    parts = sections(page("stats.md"))
    documented_sender, documented_receiver = set(table_rows(parts["Sender"])), set(table_rows(parts["Receiver"]))
    assert sender_keys - documented_sender == set(), "Sender.stats() keys missing from docs-site/stats.md"
    assert receiver_keys - documented_receiver == set(), "Receiver.stats() keys missing from docs-site/stats.md"
    assert documented_sender - sender_keys == set(), "docs-site/stats.md lists Sender keys that stats() lacks"
    assert documented_receiver - receiver_keys == set(), "docs-site/stats.md lists Receiver keys that stats() lacks"


def _constants():
    """The DEFAULT_* constants of the endpoints' options, from limits.pxi."""
    out = {}
    for line in (TRANSPORT_SRC / "limits.pxi").read_text(encoding="utf-8").splitlines():
        m = re.match(r"(DEFAULT_\w+) = ([^#]+)", line)
        if m:
            out[m.group(1)] = eval(m.group(2), {"__builtins__": {}})  # 4 << 20, 5.0, ...
    return out


def _cython_init(filename, cls):
    """[(name, default text or None)] of cls.__init__'s options in a .pxi source, endpoint first."""
    text = (TRANSPORT_SRC / filename).read_text(encoding="utf-8")
    body = text[text.index(f"cdef class {cls}"):]
    m = re.search(r"def __init__\(self,(.*?)\):", body, flags=re.S)
    assert m, f"no __init__ in {filename}"
    params = []
    for item in m.group(1).split(","):
        item = " ".join(item.split())
        if item in ("*", ""):
            continue
        pm = re.fullmatch(r"(?:\w+ )?(\w+)(?:=(.+))?", item)
        assert pm, item
        params.append((pm.group(1), pm.group(2)))
    return params


def _python_init(cls, **skip):
    return [(p.name, None if p.default is p.empty else repr(p.default))
            for p in inspect.signature(cls).parameters.values()
            if p.kind is not p.VAR_KEYWORD]


def _expected_default(text, constants):
    """The text the page's row must contain for a default, or None (None, or no literal)."""
    if text is None or text == "None":
        return None
    if text in constants:
        value = constants[text]
    else:
        try:
            value = ast.literal_eval(text)
        except ValueError:
            return None
    if value is None:
        return None
    return f'`"{value}"`' if isinstance(value, str) else f"`{value}`"


@needs_site
@pytest.mark.skipif(not TRANSPORT_SRC.is_dir(), reason="the transport's sources are not in this tree")
def test_options_page_lists_every_option_with_its_default():
    constants = _constants()
    from fastmsg.balancer import Balancer
    from fastmsg.relay import Relay

    expected = {
        "Sender": _cython_init("sender.pxi", "Sender"),
        "Receiver": _cython_init("receiver.pxi", "Receiver"),
        "Context": _cython_init("context.pxi", "Context"),
        "Balancer": _python_init(Balancer),
        "Relay": _python_init(Relay),
    }
    assert len(expected["Sender"]) >= 13 and len(expected["Receiver"]) >= 18  # the parse found them
    parts = sections(page("options.md"))
    for cls, params in expected.items():
        rows = table_rows(parts[cls])
        names = [name for name, _ in params]
        documented = [name for name in rows if not name.startswith("**")]
        assert set(names) - set(documented) == set(), f"{cls} options missing from docs-site/options.md"
        assert set(documented) - set(names) == set(), f"docs-site/options.md lists {cls} options it does not take"
        for name, default in params:
            want = _expected_default(default, constants)
            if want is not None:
                assert want in rows[name], f"{cls}({name}=...): the page should say its default {want}: {rows[name]}"


@needs_site
def test_cli_page_lists_every_command_and_option():
    from fastmsg import _cli

    text = page("cli.md")
    parser = _cli._parser()
    commands = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction").choices
    assert {"bench", "send", "recv", "relay"} <= set(commands)
    for name, sub in commands.items():
        assert f"`fastmsg {name}" in text, f"docs-site/cli.md does not describe `fastmsg {name}`"
        for action in sub._actions:
            for option in action.option_strings:
                if option not in ("-h", "--help"):
                    assert f"`{option}" in text, f"docs-site/cli.md lacks fastmsg {name} {option}"
    for action in parser._actions:
        for option in action.option_strings:
            if option not in ("-h", "--help"):
                assert f"`fastmsg {option}`" in text


@needs_site
def test_readme_links_the_site_and_says_how_to_build_it():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "docs-site/" in readme
    assert "python -m sphinx -W --keep-going docs-site build/site" in readme
    assert "docs-site/index.md" in readme


@needs_site
def test_a_malformed_docstring_is_shown_as_written_not_a_build_error():
    pytest.importorskip("sphinx", reason="Sphinx is not installed (the 'docs' extra)")
    import importlib.util

    spec = importlib.util.spec_from_file_location("docs_site_conf", SITE / "conf.py")
    conf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conf)
    bad = ["Waits for *everything", "  and then some."]  # an emphasis never closed, a stray indent
    lines = list(bad)
    conf._docstring(None, "method", "x", None, {}, lines)
    assert lines == ["::", "", "    " + bad[0], "    " + bad[1], ""]  # a literal block
    good = ["Queues one message; see :class:`fastmsg.Sender` and ``timeout``.", "", "- one", "- two"]
    lines = list(good)
    conf._docstring(None, "method", "x", None, {}, lines)
    assert lines == good
    missing = []
    conf._docstring(None, "method", "x", None, {}, missing)
    assert missing == []


def _python_blocks(name):
    return re.findall(r"^```python\n(.*?)^```", page(name), flags=re.S | re.M)


@needs_site
@needs_transport
@pytest.mark.parametrize("name,index", [("quickstart.md", 0), ("concurrency.md", 0)])
def test_self_contained_examples_run(name, index):
    """The examples that need nothing but fastmsg run as printed (the others need a peer, a
    certificate or a network)."""
    code = _python_blocks(name)[index]
    assert "import fastmsg" in code
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "hello" in r.stdout
    assert "ResourceWarning" not in r.stderr  # nothing left unacknowledged at exit
