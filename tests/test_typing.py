"""The public surface as tools see it: its types (the stubs of the extension modules and the
annotations of the Python ones) and its run-time signatures.

- tests/typecheck/usage.py, the API as an application uses it, passes `mypy --strict`, and each
  misuse in tests/typecheck/misuse.py draws the mypy error its line names (nothing else does);
- mypy's stubtest finds the stubs consistent with the installed build (names, parameters,
  defaults), but for the entries of tests/typecheck/stubtest-allowlist*.txt;
- inspect.signature() works for every public class, function and method, and the defaults it
  shows are those the objects use (an extension class's signature, written in its docstring,
  is its constructor's as the source declares it); the TypedDicts name exactly the keys stats()
  and the others return, with their types.

mypy runs on the installed package (as a user's type checker sees it), from a directory of its
own, with its cache in a temporary directory."""

import importlib
import inspect
import os
import re
import subprocess
import sys
import types
import typing
from pathlib import Path

import pytest

import fastmsg
import fastmsg.asyncio
import fastmsg.testing
import fastmsg.types
from fastmsg._core import transport
from fastmsg._core.routing import STRATEGIES
from fastmsg.balancer import Balancer

HERE = Path(__file__).parent / "typecheck"

# path:line: error: message  [code]
ERROR_LINE = re.compile(r"^(?P<path>.+?):(?P<line>\d+): error: (?P<message>.*?)(?:  \[(?P<code>[a-z0-9-]+)\])?$")
EXPECTED = re.compile(r"# error: (?P<code>[a-z0-9-]+)\s*$")


def _run(args, cwd):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MYPY")}
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


# ---- mypy --strict on the usage example and on the misuses ----

@pytest.fixture(scope="module")
def mypy_errors(tmp_path_factory):
    """{file name: [(line, code, message)]} of one mypy --strict run over both files."""
    work = tmp_path_factory.mktemp("mypy")
    result = _run(["mypy", "--strict", "--no-error-summary", "--show-error-codes", "--no-pretty",
                   "--cache-dir", str(work / "cache"), str(HERE / "usage.py"), str(HERE / "misuse.py")], cwd=work)
    assert result.returncode in (0, 1), f"mypy failed to run:\n{result.stdout}\n{result.stderr}"
    errors = {}
    for line in result.stdout.splitlines():
        m = ERROR_LINE.match(line)
        if m:
            errors.setdefault(Path(m["path"]).name, []).append((int(m["line"]), m["code"], m["message"]))
    return errors


def test_usage_example_passes_mypy_strict(mypy_errors):
    assert mypy_errors.get("usage.py", []) == []


def test_each_misuse_draws_its_error_and_nothing_else_does(mypy_errors):
    expected = set()
    for number, text in enumerate((HERE / "misuse.py").read_text().splitlines(), 1):
        m = EXPECTED.search(text)
        if m:
            expected.add((number, m["code"]))
    assert len(expected) >= 30
    reported = {(line, code) for line, code, _ in mypy_errors.get("misuse.py", [])}
    assert sorted(expected - reported) == [], "misuses that type-check (line, expected code)"
    assert sorted(reported - expected) == [], "errors no line expects:\n" + "\n".join(
        f"{line}: {message} [{code}]" for line, code, message in mypy_errors["misuse.py"]
        if (line, code) not in expected)
    others = {name: found for name, found in mypy_errors.items() if name not in ("usage.py", "misuse.py")}
    assert others == {}, "errors outside the two files (in the installed stubs?)"


# ---- stubtest: the stubs against the built modules ----

def test_stubs_match_the_installed_build(tmp_path):
    allowlists = [HERE / "stubtest-allowlist.txt"]
    if sys.version_info < (3, 12):
        allowlists.append(HERE / "stubtest-allowlist-py311.txt")
    # --ignore-disjoint-bases: PEP 800's @disjoint_base (every extension class is one), which
    # stubtest asks for since mypy 1.18, is too new for the type checkers that read these stubs.
    args = ["mypy.stubtest", "fastmsg", "--concise", "--ignore-disjoint-bases",
            "--mypy-config-file", str(HERE / "stubtest.ini")]
    for allowlist in allowlists:
        args += ["--allowlist", str(allowlist)]
    result = _run(args, cwd=tmp_path)
    assert result.returncode == 0, f"stubtest:\n{result.stdout}\n{result.stderr}"


# ---- run-time signatures ----

PUBLIC_MODULES = ("fastmsg", "fastmsg.asyncio", "fastmsg.testing", "fastmsg.balancer", "fastmsg.errors",
                  "fastmsg.endpoint", "fastmsg.polling")


def _own(cls, name):
    """The class in cls's MRO that defines `name` is fastmsg's (not object's, nor Exception's)."""
    for klass in cls.__mro__:
        if name in vars(klass):
            return klass.__module__.startswith("fastmsg")
    return False


def _public_callables():
    seen = set()
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        names = getattr(module, "__all__", None) or [  # (fastmsg.errors: what it defines)
            name for name, obj in vars(module).items()
            if not name.startswith("_") and getattr(obj, "__module__", None) == module_name]
        for name in names:
            obj = getattr(module, name)
            if not callable(obj) or id(obj) in seen:
                continue
            seen.add(id(obj))
            if isinstance(obj, type) and issubclass(obj, BaseException) and not _own(obj, "__init__"):
                continue  # BaseException's own constructor has no signature in CPython either
            yield f"{module_name}.{name}", obj
            if not isinstance(obj, type):
                continue
            for attr in dir(obj):
                if attr.startswith("_") or not _own(obj, attr):
                    continue
                static = inspect.getattr_static(obj, attr)
                if isinstance(static, (property, types.GetSetDescriptorType, types.MemberDescriptorType)):
                    continue
                if callable(getattr(obj, attr)):
                    yield f"{module_name}.{name}.{attr}", getattr(obj, attr)


PUBLIC_CALLABLES = dict(_public_callables())


def test_public_callables_are_found():
    for name in ("fastmsg.Sender", "fastmsg.Sender.send", "fastmsg.Receiver.recv_many", "fastmsg.Message.reply",
                 "fastmsg.Context", "fastmsg.RingBuffer.write", "fastmsg.SharedRing.create", "fastmsg.poll",
                 "fastmsg.Balancer.send", "fastmsg.asyncio.Sender.aclose", "fastmsg.testing.FaultProxy.flip_bits",
                 "fastmsg.MessageTooLarge", "fastmsg.endpoint.parse"):
        assert name in PUBLIC_CALLABLES


@pytest.mark.parametrize("name", sorted(PUBLIC_CALLABLES))
def test_signature_and_docstring(name):
    obj = PUBLIC_CALLABLES[name]
    inspect.signature(obj)  # raises ValueError when there is none
    assert inspect.getdoc(obj), f"{name} has no docstring"


def _defaults(cls):
    return {p.name: p.default for p in inspect.signature(cls).parameters.values() if p.default is not p.empty}


def _assert_keyword_only_after(cls, first):
    params = list(inspect.signature(cls).parameters.values())
    assert [p.name for p in params[:len(first)]] == list(first)
    assert {p.kind for p in params[len(first):]} == {inspect.Parameter.KEYWORD_ONLY}


def test_sender_and_receiver_signatures_are_their_constructors():
    _assert_keyword_only_after(fastmsg.Sender, ["endpoint"])
    _assert_keyword_only_after(fastmsg.Receiver, ["endpoint"])
    rdefaults, sdefaults = _defaults(fastmsg.Receiver), _defaults(fastmsg.Sender)
    # The values __init__ takes by default are these constants (its defaults are bound to them).
    assert (sdefaults["hwm_bytes"], sdefaults["ring_bytes"], sdefaults["max_message_size"], sdefaults["max_batch_bytes"],
            sdefaults["handshake_timeout"], sdefaults["heartbeat_interval"], sdefaults["linger"]) == (
        transport.DEFAULT_HWM_BYTES, transport.DEFAULT_SEND_RING, transport.DEFAULT_MAX_MESSAGE, transport.DEFAULT_MAX_BATCH,
        transport.DEFAULT_HANDSHAKE_TIMEOUT, transport.DEFAULT_HEARTBEAT_INTERVAL, transport.DEFAULT_LINGER)
    assert (rdefaults["max_message_size"], rdefaults["max_batch_bytes"], rdefaults["max_connections"],
            rdefaults["ring_bytes"], rdefaults["handshake_timeout"], rdefaults["max_sessions"], rdefaults["ack"],
            rdefaults["heartbeat_interval"], rdefaults["reply_hwm_bytes"]) == (
        transport.DEFAULT_MAX_MESSAGE, transport.DEFAULT_MAX_BATCH, transport.DEFAULT_MAX_CONNECTIONS,
        transport.DEFAULT_CONN_RING, transport.DEFAULT_HANDSHAKE_TIMEOUT, transport.DEFAULT_MAX_SESSIONS,
        transport.ACK_MODES[0], transport.DEFAULT_HEARTBEAT_INTERVAL, transport.DEFAULT_REPLY_HWM_BYTES)
    # Every parameter the signatures show is one the constructors take, with that value.
    with fastmsg.Receiver("tcp://127.0.0.1:0", **rdefaults) as rx, \
            fastmsg.Sender(rx.endpoint, **sdefaults) as tx, fastmsg.Sender(rx.endpoint) as plain:
        assert rx.reply_hwm_bytes == rdefaults["reply_hwm_bytes"]
        assert tx.linger == plain.linger == sdefaults["linger"]
        with pytest.raises(fastmsg.MessageTooLarge) as info:
            plain.send(bytes(sdefaults["max_message_size"] + 1))
        assert info.value.limit == sdefaults["max_message_size"]
        # ... and what they show as keyword-only is
        with pytest.raises(TypeError):
            fastmsg.Sender(rx.endpoint, None)
        with pytest.raises(TypeError):
            fastmsg.Receiver("tcp://127.0.0.1:0", None)
    assert inspect.signature(fastmsg.Sender.close).parameters["linger"].default is transport.OWN_LINGER


# Where each extension class's constructor is defined (its signature is written out again in
# its docstring, where inspect.signature() reads it: the two must agree).
CORE = Path(__file__).resolve().parents[1] / "src" / "fastmsg" / "_core"
CONSTRUCTOR_SOURCES = {"Sender": "_transport/sender.pxi", "Receiver": "_transport/receiver.pxi",
                       "Context": "_transport/context.pxi", "Message": "_transport/message.pxi",
                       "RingBuffer": "ring.pyx", "SharedRing": "ring.pyx", "Record": "ring.pyx", "Router": "routing.pyx"}


def _source_signature(cls):
    """[(name, kind, default)] of cls's __init__ (or __cinit__) as its source declares it, the
    defaults evaluated in its module; C types (`Context context=None`) left out."""
    text = (CORE / CONSTRUCTOR_SOURCES[cls.__name__]).read_text()
    m = re.search(rf"^cdef class {cls.__name__}\b.*?^    def (?:__init__|__cinit__)\(self,?(.*?)\):", text,
                  re.S | re.M)
    assert m, f"no constructor for {cls.__name__}"
    params, kind = [], inspect.Parameter.POSITIONAL_OR_KEYWORD
    for part in filter(None, (p.strip() for p in m[1].split(","))):
        if part == "*":
            kind = inspect.Parameter.KEYWORD_ONLY
            continue
        declaration, _, default = part.partition("=")
        value = eval(default, vars(sys.modules[cls.__module__])) if default else inspect.Parameter.empty
        params.append((declaration.split()[-1], kind, value))
    return params


@pytest.mark.skipif(not CORE.is_dir(), reason="the sources are not here (a wheel's tests)")
@pytest.mark.parametrize("name", sorted(CONSTRUCTOR_SOURCES))
def test_class_signature_is_its_constructors(name):
    from fastmsg._core.routing import Router

    cls = Router if name == "Router" else getattr(fastmsg, name)
    shown = [(p.name, p.kind, p.default) for p in inspect.signature(cls).parameters.values()]
    assert shown == _source_signature(cls)


def test_other_extension_class_signatures():
    assert list(_defaults(fastmsg.Context)) == ["io_threads", "poller"]
    with fastmsg.Context(**_defaults(fastmsg.Context)) as ctx, fastmsg.Context() as plain:
        assert ctx.poller == plain.poller
    assert list(inspect.signature(fastmsg.RingBuffer).parameters) == ["capacity"]
    with fastmsg.RingBuffer(capacity=64) as ring:
        assert ring.capacity == 64
    # Not made by calling the class; their signatures say so, as do the errors.
    for cls in (fastmsg.Message, fastmsg.Record, fastmsg.SharedRing):
        assert list(inspect.signature(cls).parameters) == []
        with pytest.raises(TypeError):
            cls()


def test_option_typeddicts_are_the_constructors_options():
    def keywords(cls):
        return {p.name for p in inspect.signature(cls).parameters.values() if p.kind is p.KEYWORD_ONLY}

    assert set(fastmsg.types.SenderOptions.__annotations__) | {"context"} == keywords(fastmsg.Sender)
    assert fastmsg.types.SenderOptions.__optional_keys__ == keywords(fastmsg.Sender)
    assert fastmsg.types.BalancerSenderOptions.__optional_keys__ == keywords(fastmsg.Sender) - {"context"}
    assert fastmsg.types.ReceiverOptions.__optional_keys__ == keywords(fastmsg.Receiver)
    assert set(typing.get_args(fastmsg.types.Strategy)) == set(STRATEGIES)


# ---- the TypedDicts of what stats() and connections() return ----

def _check_dict(value, typed_dict):
    hints = typing.get_type_hints(typed_dict)
    assert set(value) == set(hints), f"{typed_dict.__name__}: keys differ"
    for key, hint in hints.items():
        origin = typing.get_origin(hint)
        if origin is typing.Literal:
            assert value[key] in typing.get_args(hint), key
        elif origin is list:
            assert isinstance(value[key], list), key
        elif typing.is_typeddict(hint):
            _check_dict(value[key], hint)
        else:
            assert isinstance(value[key], hint), f"{typed_dict.__name__}[{key!r}] = {value[key]!r}"


def test_stats_typeddicts_name_every_key_with_its_type():
    with fastmsg.Receiver("tcp://127.0.0.1:0") as rx, fastmsg.Sender(rx.endpoint) as tx:
        tx.send(b"x")
        rx.recv(timeout=10).release()
        _check_dict(tx.stats(), fastmsg.types.SenderStats)
        _check_dict(rx.stats(), fastmsg.types.ReceiverStats)
        (conn,) = rx.connections()
        _check_dict(conn, fastmsg.types.ConnectionInfo)
        with Balancer([rx.endpoint]) as balancer:
            stats = balancer.stats()
            _check_dict(stats, fastmsg.types.BalancerStats)
            (member,) = stats["endpoints"]
            _check_dict(member, fastmsg.types.BalancerMemberStats)
    with fastmsg.testing.FaultProxy("tcp://127.0.0.1:9") as proxy:
        _check_dict(proxy.stats(), fastmsg.types.FaultProxyStats)
