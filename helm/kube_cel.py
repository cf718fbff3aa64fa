"""The CEL rules (`x-kubernetes-validations`) of CustomResourceDefinition schemas, evaluated offline the
way the Kubernetes API server evaluates them, for helm/gate.py.

The evaluator is cel-python (module ``celpy``, pinned in scripts/chart-gate). What it lacks of the
Kubernetes CEL environment, or does differently, is supplied here (``FUNCTIONS``):

* ``duration(string)``     Go's ``time.ParseDuration`` exactly (units ns, us, µs, μs, ms, s, m, h; a bare
                           "0"; signs; fractions; overflow past 2^63-1 ns is an error), as cel-go does;
                           celpy's own parser is looser and keeps only microseconds.
* ``int(string)``          strict base-10 (Go's ``strconv.ParseInt``): celpy's Python ``int()`` would also
                           take " 80", "8_0".
* ``string.substring(start[, end])``  cel-go's strings extension (code-point indices, range errors).
* ``url(string)``, ``isURL(string)`` and the URL methods ``getScheme``, ``getHost``, ``getHostname``,
  ``getPort``, ``getEscapedPath``, ``getQuery``: Kubernetes' URL library (an absolute URI or an absolute
  path, as Go's ``url.ParseRequestURI``; the scheme lower-cased as Go's ``url.Parse`` does).

Used from celpy as they are (the ones the Istio 1.30 rules call, checked by ``SELF_TEST``): the macros
``has``, ``all``, ``exists``, ``exists_one``, ``map``, ``filter``; ``size``, ``contains``, ``startsWith``,
``endsWith``, ``matches`` (RE2 through google-re2, unanchored as in cel-go).

Anything else a rule calls (``format``, ``quantity``, ``ip``, ``cidr``, ``lowerAscii``, ``split``,
``string``, ``double``, ``timestamp``…) is NOT allowed: ``compile_rule`` refuses it, so a schema that
starts using one stops the gate instead of a rule being skipped, or its error absorbed by ``||``, until
it is implemented or checked here.

Values reach CEL as the API server hands them over (k8s.io/apiserver/pkg/cel/common): an object with
``properties`` is an object whose fields are the escaped property names (``__dash__``, ``__dot__``…), one
with ``additionalProperties`` a map with its keys as they are; arrays are lists; strings of format
``duration``, ``date``/``date-time`` and ``byte`` are durations, timestamps and bytes; schema defaults are
applied first (the API server defaults before it validates). Rules are evaluated on every node of the
schema tree (under ``properties``, ``items`` and ``additionalProperties``, at any depth) where the
object has a non-null value, with ``self`` bound to that value.

Not modelled: transition rules (they use ``oldSelf``, which exists only on update; the gate checks
installs, so they are skipped and counted), and the API server's cost limits (they bound the rule, which
the CRD's own installation already accepted, not the object).
"""

from __future__ import annotations

import base64
import datetime
import re
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import celpy
import celpy.celtypes as celtypes
import lark
from celpy.evaluation import CELEvalError

# Rule keys the API server knows. Any other key means a schema this module was not written for.
RULE_KEYS = frozenset({"rule", "message", "messageExpression", "reason", "fieldPath", "optionalOldSelf"})

MACROS = frozenset({"has", "all", "exists", "exists_one", "map", "filter"})
CELPY_FUNCTIONS_USED_AS_IS = frozenset({"size", "contains", "startsWith", "endsWith", "matches"})

# ---------------------------------------------------------------------------------------------
# Errors


class CelLibraryError(Exception):
    """A rule that cannot be compiled, or that calls a function this module does not provide."""


def _error(message: str, exc: type[Exception] = ValueError) -> CELEvalError:
    return CELEvalError(message, exc, (message,))


# ---------------------------------------------------------------------------------------------
# duration(): Go's time.ParseDuration

_UNITS_NS = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # µ (micro sign)
    "\u03bcs": 1_000,  # μ (Greek mu)
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
}
_MAX_U63 = 1 << 63


def parse_go_duration(text: str) -> int:
    """Nanoseconds of a Go duration string, exactly as Go's time.ParseDuration (ValueError otherwise)."""
    original, s, negative = text, text, False
    if s and s[0] in "+-":
        negative, s = s[0] == "-", s[1:]
    if s == "0":
        return 0
    if not s:
        raise ValueError(f"time: invalid duration {original!r}")
    total = 0
    while s:
        if not (s[0] == "." or s[0].isascii() and s[0].isdigit()):
            raise ValueError(f"time: invalid duration {original!r}")
        match = re.match(r"[0-9]*", s)
        digits, s = match.group(0), s[match.end():]
        value = 0
        for digit in digits:  # Go's leadingInt: an overflow is an error
            if value > (_MAX_U63 - 1) // 10:
                raise ValueError(f"time: invalid duration {original!r}")
            value = value * 10 + int(digit)
            if value > _MAX_U63:
                raise ValueError(f"time: invalid duration {original!r}")
        fraction, scale, post = 0, 1.0, False
        if s.startswith("."):
            s = s[1:]
            match = re.match(r"[0-9]*", s)
            fraction_digits, s = match.group(0), s[match.end():]
            post = bool(fraction_digits)
            overflow = False
            for digit in fraction_digits:  # Go's leadingFraction: digits past overflow are ignored
                if overflow:
                    continue
                if fraction > (_MAX_U63 - 1) // 10:
                    overflow = True
                    continue
                candidate = fraction * 10 + int(digit)
                if candidate > _MAX_U63:
                    overflow = True
                    continue
                fraction, scale = candidate, scale * 10
        if not digits and not post:
            raise ValueError(f"time: invalid duration {original!r}")
        match = re.match(r"[^0-9.]*", s)
        unit, s = match.group(0), s[match.end():]
        if not unit:
            raise ValueError(f"time: missing unit in duration {original!r}")
        if unit not in _UNITS_NS:
            raise ValueError(f"time: unknown unit {unit!r} in duration {original!r}")
        factor = _UNITS_NS[unit]
        if value > _MAX_U63 // factor:
            raise ValueError(f"time: invalid duration {original!r}")
        value *= factor
        if fraction > 0:
            value += int(float(fraction) * (float(factor) / scale))  # Go computes this part in float64
            if value > _MAX_U63:
                raise ValueError(f"time: invalid duration {original!r}")
        total += value
        if total > _MAX_U63:
            raise ValueError(f"time: invalid duration {original!r}")
    if negative:
        return -total
    if total > _MAX_U63 - 1:
        raise ValueError(f"time: invalid duration {original!r}")
    return total


def duration_from_ns(nanoseconds: int) -> celtypes.DurationType:
    """A celpy duration (it keeps microseconds: truncating nanoseconds never moves a value across a
    bound of whole microseconds such as the rules' 1ms)."""
    seconds, nanos = divmod(nanoseconds, 1_000_000_000)
    return celtypes.DurationType(seconds, nanos)


def cel_duration(value: Any) -> Any:
    if isinstance(value, celtypes.DurationType):
        return value
    if not isinstance(value, str):
        return _error(f"no such overload: duration({type(value).__name__})", TypeError)
    try:
        return duration_from_ns(parse_go_duration(str(value)))
    except ValueError as error:
        return _error(f"duration({str(value)!r}): {error}")


# ---------------------------------------------------------------------------------------------
# int(), substring()


def cel_int(value: Any) -> Any:
    if isinstance(value, celtypes.StringType):
        if not re.fullmatch(r"[+-]?[0-9]+", str(value)):
            return _error(f"cannot convert {str(value)!r} to int")
        number = int(str(value))
        if not -(1 << 63) <= number < (1 << 63):
            return _error(f"int({str(value)!r}) out of range")
        return celtypes.IntType(number)
    if isinstance(value, (celtypes.DurationType, celtypes.TimestampType)):
        return celtypes.IntType(value)
    try:
        return celtypes.IntType(value)
    except (ValueError, TypeError) as error:
        return _error(f"int({value!r}): {error}")


def cel_substring(text: Any, start: Any, end: Any = None) -> Any:
    if not isinstance(text, str) or not isinstance(start, int) or (end is not None and not isinstance(end, int)):
        return _error("no such overload: substring", TypeError)
    length = len(text)  # Python strings index code points, as cel-go's substring does
    stop = length if end is None else int(end)
    if int(start) < 0 or int(start) > length:
        return _error(f"index out of range: {int(start)}")
    if stop < 0 or stop > length:
        return _error(f"index out of range: {stop}")
    if int(start) > stop:
        return _error(f"invalid substring range. start: {int(start)}, end: {stop}")
    return celtypes.StringType(text[int(start):stop])


# ---------------------------------------------------------------------------------------------
# Kubernetes' URL library


@dataclass(frozen=True)
class KubeUrl:
    """A parsed URL (the CEL type `URL` of k8s.io/apiserver/pkg/cel/library/urls.go)."""

    scheme: str
    netloc: str
    hostname: str
    port: str
    escaped_path: str
    query: str


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")


def parse_url(text: str) -> KubeUrl:
    """Go's url.ParseRequestURI then url.Parse, as far as the URL functions need: an absolute URI (a
    scheme) or an absolute path; no ASCII control characters or spaces; a numeric port."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise ValueError("invalid control character in URL")
    if not text:
        raise ValueError("empty url")
    scheme_match = re.match(r"([^:/?#]*):", text)
    if scheme_match and scheme_match.group(1):
        if not _SCHEME.fullmatch(scheme_match.group(1)):
            raise ValueError("first path segment in URL cannot contain colon")
    elif not text.startswith("/"):
        raise ValueError("invalid URI for request")
    parts = urllib.parse.urlsplit(text)
    netloc = parts.netloc
    host_port = netloc.rpartition("@")[2]
    if " " in host_port:
        raise ValueError(f"invalid character ' ' in host name")
    if host_port.startswith("["):
        close = host_port.find("]")
        if close < 0:
            raise ValueError("missing ']' in host")
        hostname, rest = host_port[1:close], host_port[close + 1:]
        port = rest[1:] if rest.startswith(":") else ""
        if rest and not rest.startswith(":"):
            raise ValueError(f"invalid port {rest!r} after host")
    else:
        hostname, colon, port = host_port.partition(":")
        if colon and ":" in port:
            raise ValueError(f"invalid port {':' + port!r} after host")
    if port and not port.isdigit():
        raise ValueError(f"invalid port {':' + port!r} after host")
    return KubeUrl(
        scheme=parts.scheme.lower(),
        netloc=host_port,
        hostname=hostname,
        port=port,
        escaped_path=parts.path,
        query=parts.query,
    )


def cel_url(text: Any) -> Any:
    if not isinstance(text, str):
        return _error("no such overload: url", TypeError)
    try:
        return parse_url(str(text))
    except ValueError as error:
        return _error(f"URL parse error during conversion from string: {error}")


def cel_is_url(text: Any) -> Any:
    if not isinstance(text, str):
        return _error("no such overload: isURL", TypeError)
    try:
        parse_url(str(text))
    except ValueError:
        return celtypes.BoolType(False)
    return celtypes.BoolType(True)


def _url_method(name: str, attribute: str):
    def method(url: Any) -> Any:
        if not isinstance(url, KubeUrl):
            return _error(f"no such overload: {name}", TypeError)
        return celtypes.StringType(getattr(url, attribute))

    method.__name__ = name
    return method


def cel_get_query(url: Any) -> Any:
    if not isinstance(url, KubeUrl):
        return _error("no such overload: getQuery", TypeError)
    query: dict[celtypes.StringType, list[celtypes.StringType]] = {}
    for key, value in urllib.parse.parse_qsl(url.query, keep_blank_values=True):
        query.setdefault(celtypes.StringType(key), []).append(celtypes.StringType(value))
    return celtypes.MapType({key: celtypes.ListType(values) for key, values in query.items()})


FUNCTIONS: dict[str, Any] = {
    "duration": cel_duration,
    "int": cel_int,
    "substring": cel_substring,
    "url": cel_url,
    "isURL": cel_is_url,
    "getScheme": _url_method("getScheme", "scheme"),
    "getHost": _url_method("getHost", "netloc"),
    "getHostname": _url_method("getHostname", "hostname"),
    "getPort": _url_method("getPort", "port"),
    "getEscapedPath": _url_method("getEscapedPath", "escaped_path"),
    "getQuery": cel_get_query,
}

SUPPORTED_CALLS = MACROS | CELPY_FUNCTIONS_USED_AS_IS | frozenset(FUNCTIONS)


# ---------------------------------------------------------------------------------------------
# Compiling


@dataclass
class Rule:
    """One `x-kubernetes-validations` entry, compiled."""

    text: str
    message: str
    field_path: str
    transition: bool
    program: Any = None
    message_program: Any = None


_ENVIRONMENT = celpy.Environment()


def calls_and_identifiers(tree: lark.Tree) -> tuple[set[str], set[str]]:
    """Every function or method a CEL expression calls (macros included) and every identifier it names."""
    calls: set[str] = set()
    identifiers: set[str] = set()
    for node in tree.iter_subtrees():
        if node.data in ("ident_arg", "dot_ident_arg"):
            calls.add(str(node.children[0]))
        elif node.data == "member_dot_arg":
            calls.add(str(node.children[1]))
        elif node.data in ("ident", "dot_ident"):
            identifiers.add(str(node.children[0]))
    return calls, identifiers


def _compile(text: str, where: str) -> tuple[Any, set[str]]:
    if text in _COMPILED:
        return _COMPILED[text]
    try:
        tree = _ENVIRONMENT.compile(text)
    except Exception as error:  # celpy raises CELParseError and lark errors
        raise CelLibraryError(f"{where}: rule {text!r} does not compile: {error}") from error
    calls, identifiers = calls_and_identifiers(tree)
    unsupported = sorted(calls - SUPPORTED_CALLS)
    if unsupported:
        raise CelLibraryError(
            f"{where}: rule {text!r} calls {', '.join(unsupported)}, which helm/kube_cel.py does not "
            f"implement (add it to FUNCTIONS)"
        )
    _COMPILED[text] = (_ENVIRONMENT.program(tree, functions=FUNCTIONS), identifiers)
    return _COMPILED[text]


_COMPILED: dict[str, tuple[Any, set[str]]] = {}


def compile_rule(entry: Any, where: str) -> Rule:
    """A rule as the CRD states it; CelLibraryError when it cannot be evaluated faithfully."""
    if not isinstance(entry, dict) or not isinstance(entry.get("rule"), str):
        raise CelLibraryError(f"{where}: not a validation rule: {entry!r}")
    unknown = sorted(set(entry) - RULE_KEYS)
    if unknown:
        raise CelLibraryError(f"{where}: rule {entry['rule']!r} has keys {unknown} this gate does not know")
    text = entry["rule"]
    program, identifiers = _compile(text, where)
    rule = Rule(
        text=text,
        message=str(entry.get("message") or f"failed rule: {text}"),
        field_path=str(entry.get("fieldPath") or ""),
        transition="oldSelf" in identifiers,
        program=program,
    )
    if entry.get("messageExpression"):
        rule.message_program, _ = _compile(str(entry["messageExpression"]), f"{where} messageExpression")
    return rule


# ---------------------------------------------------------------------------------------------
# The schema tree

JUNCTORS = ("allOf", "anyOf", "oneOf", "not")


@dataclass
class RuleSite:
    """A schema node that carries rules, and how to reach it."""

    pointer: str  # JSON pointer into the schema file, for messages
    rules: list[Rule]


def schema_children(schema: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """The structural sub-schemas the API server evaluates rules under (pointer step, schema)."""
    for name, sub in (schema.get("properties") or {}).items():
        if isinstance(sub, dict):
            yield f"properties/{name}", sub
    if isinstance(schema.get("items"), dict):
        yield "items", schema["items"]
    if isinstance(schema.get("additionalProperties"), dict):
        yield "additionalProperties", schema["additionalProperties"]


def count_rules_anywhere(node: Any) -> int:
    """Every `x-kubernetes-validations` entry anywhere in a document, reachable or not."""
    if isinstance(node, dict):
        own = node.get("x-kubernetes-validations")
        return (len(own) if isinstance(own, list) else 0) + sum(count_rules_anywhere(v) for v in node.values())
    if isinstance(node, list):
        return sum(count_rules_anywhere(v) for v in node)
    return 0


class CompiledSchema:
    """A CRD version's openAPIV3Schema with every rule compiled (id(schema node) -> rules)."""

    def __init__(self, schema: dict[str, Any], where: str) -> None:
        self.schema = schema
        self.sites: dict[int, RuleSite] = {}
        reached = self._compile(schema, where, "")
        everywhere = count_rules_anywhere(schema)
        if reached != everywhere:
            raise CelLibraryError(
                f"{where}: {everywhere - reached} of {everywhere} CEL rule(s) sit where the gate does not "
                f"evaluate them (under {', '.join(JUNCTORS)} or another non-structural keyword)"
            )
        self.rule_count = reached
        self.transition_count = sum(r.transition for s in self.sites.values() for r in s.rules)

    def _compile(self, schema: dict[str, Any], where: str, pointer: str) -> int:
        entries = schema.get("x-kubernetes-validations") or []
        if not isinstance(entries, list):
            raise CelLibraryError(f"{where}#{pointer}: x-kubernetes-validations is not a list")
        count = len(entries)
        if entries:
            rules = [compile_rule(entry, f"{where}#{pointer or '/'}") for entry in entries]
            self.sites[id(schema)] = RuleSite(pointer or "/", rules)
        for step, sub in schema_children(schema):
            count += self._compile(sub, where, f"{pointer}/{step}")
        return count


# ---------------------------------------------------------------------------------------------
# Values as the API server hands them to CEL

CEL_RESERVED = frozenset(
    {
        "true", "false", "null", "in", "as", "break", "const", "continue", "else", "for", "function",
        "if", "import", "let", "loop", "package", "namespace", "return", "var", "void", "while",
    }
)


def escape_property(name: str) -> str | None:
    """A property name as a CEL field name (k8s.io/apiserver/pkg/cel/escaping.go), None when it has none."""
    if name in CEL_RESERVED:
        return f"__{name}__"
    escaped = (
        name.replace("__", "__underscores__").replace(".", "__dot__").replace("-", "__dash__").replace("/", "__slash__")
    )
    return escaped if re.fullmatch(r"[_a-zA-Z][_a-zA-Z0-9]*", escaped) else None


def apply_defaults(value: Any, schema: dict[str, Any]) -> Any:
    """The value with the schema's defaults filled in (the API server defaults before validating)."""
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        result = {}
        for key, item in value.items():
            sub = properties.get(key, schema.get("additionalProperties"))
            result[key] = apply_defaults(item, sub) if isinstance(sub, dict) else item
        for key, sub in properties.items():
            if key not in result and isinstance(sub, dict) and "default" in sub:
                result[key] = apply_defaults(sub["default"], sub)
        return result
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [apply_defaults(item, schema["items"]) for item in value]
    return value


def to_cel(value: Any, schema: dict[str, Any] | None) -> Any:
    """A JSON value as a CEL value, typed by its schema node."""
    schema = schema or {}
    if value is None:
        return None
    if isinstance(value, bool):
        return celtypes.BoolType(value)
    if isinstance(value, int):
        return celtypes.IntType(value)
    if isinstance(value, float):
        return celtypes.DoubleType(value)
    if isinstance(value, str):
        return _string_to_cel(value, str(schema.get("format") or ""))
    if isinstance(value, list):
        items = schema.get("items") if isinstance(schema.get("items"), dict) else None
        return celtypes.ListType([to_cel(item, items) for item in value])
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        if properties:
            fields = {}
            for key, item in value.items():
                name = escape_property(str(key)) if key in properties else str(key)
                if name is not None:
                    fields[celtypes.StringType(name)] = to_cel(item, properties.get(key))
            return celtypes.MapType(fields)
        sub = extra if isinstance(extra, dict) else None
        return celtypes.MapType({celtypes.StringType(str(k)): to_cel(v, sub) for k, v in value.items()})
    raise TypeError(f"not a JSON value: {value!r}")


def _string_to_cel(value: str, fmt: str) -> Any:
    if fmt == "duration":
        return duration_from_ns(parse_go_duration(value))
    if fmt in ("date", "date-time"):
        text = value if fmt == "date-time" else f"{value}T00:00:00Z"
        return celtypes.TimestampType(datetime.datetime.fromisoformat(text.replace("Z", "+00:00")))
    if fmt == "byte":
        return celtypes.BytesType(base64.b64decode(value, validate=True))
    return celtypes.StringType(value)


# ---------------------------------------------------------------------------------------------
# Evaluating


@dataclass
class Evaluation:
    """What evaluating a schema's rules on one object found."""

    evaluated: int
    skipped_transition: int
    problems: list[str]


def json_path(parts: list[str | int]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(root)"


def evaluate(compiled: CompiledSchema, obj: dict[str, Any]) -> Evaluation:
    """Every rule of the schema at every node where the object has a value."""
    result = Evaluation(0, 0, [])
    _walk(compiled, compiled.schema, apply_defaults(obj, compiled.schema), [], result)
    return result


def _walk(compiled: CompiledSchema, schema: dict[str, Any], value: Any, path: list[str | int], out: Evaluation) -> None:
    if value is None:
        return
    site = compiled.sites.get(id(schema))
    if site is not None:
        try:
            activation_self = to_cel(value, schema)
        except (ValueError, TypeError) as error:
            out.problems.append(f"{json_path(path)}: cannot be given to CEL: {error}")
            activation_self = None
        if activation_self is not None:
            for rule in site.rules:
                if rule.transition:
                    out.skipped_transition += 1
                    continue
                out.evaluated += 1
                problem = _run(rule, activation_self)
                if problem:
                    where = json_path(path) + (rule.field_path if rule.field_path else "")
                    out.problems.append(f"{where}: {problem} (rule {rule.text!r})")
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            sub = properties.get(key, extra if isinstance(extra, dict) else None)
            if isinstance(sub, dict):
                _walk(compiled, sub, item, [*path, str(key)], out)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            _walk(compiled, schema["items"], item, [*path, index], out)


def _run(rule: Rule, value: Any) -> str | None:
    """None when the rule holds; otherwise why the API server would refuse the object."""
    try:
        outcome = rule.program.evaluate({"self": value})
    except CELEvalError as error:
        return f"evaluation error: {_short(error)}"
    except Exception as error:  # a bug in a library function must not pass silently
        return f"evaluation error: {type(error).__name__}: {error}"
    if isinstance(outcome, CELEvalError):
        return f"evaluation error: {_short(outcome)}"
    if not isinstance(outcome, celtypes.BoolType):
        return f"evaluation error: the rule gave {outcome!r}, not a bool"
    if bool(outcome):
        return None
    if rule.message_program is not None:
        try:
            message = rule.message_program.evaluate({"self": value})
            if isinstance(message, str) and message.strip():
                return str(message)
        except CELEvalError:
            pass
    return rule.message


def _short(error: Exception) -> str:
    args = getattr(error, "args", ())
    return str(args[0] if args else error)[:200]


# ---------------------------------------------------------------------------------------------
# Self-test: the library against known answers (run by the gate before it trusts a verdict)

SELF_TEST: tuple[tuple[str, Any, bool | None], ...] = (
    # (rule, self, expected: True holds, False refused, None evaluation error)
    ("duration(self) >= duration('1ms')", "0s", False),
    ("duration(self) >= duration('1ms')", "0", False),
    ("duration(self) >= duration('1ms')", "999us", False),
    ("duration(self) >= duration('1ms')", "999999ns", False),
    ("duration(self) >= duration('1ms')", "0.9ms", False),
    ("duration(self) >= duration('1ms')", "-5s", False),
    ("duration(self) >= duration('1ms')", "1ms", True),
    ("duration(self) >= duration('1ms')", "1000\u00b5s", True),
    ("duration(self) >= duration('1ms')", "1.5h", True),
    ("duration(self) >= duration('1ms')", "1h2m3.5s", True),
    ("duration(self) >= duration('1ms')", "5", None),
    ("duration(self) >= duration('1ms')", "5d", None),
    ("duration(self) >= duration('1ms')", "1 s", None),
    ("duration(self) >= duration('1ms')", "", None),
    ("duration(self) >= duration('1ms')", ".s", None),
    ("duration(self) >= duration('1ms')", "9999999999h", None),
    ("self.all(key, 0 < int(key) && int(key) <= 65535)", {"80": 1, "65535": 2}, True),
    ("self.all(key, 0 < int(key) && int(key) <= 65535)", {"0": 1}, False),
    ("self.all(key, 0 < int(key) && int(key) <= 65535)", {"8_0": 1}, None),
    ("self.all(key, key.size() != 0)", {"": "x"}, False),
    ("self.all(key, !key.contains(\"*\"))", {"app": "x", "a*": "y"}, False),
    ('self.all(key, size(key) < 63 && key.matches("^[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?$"))', {"grpc-web": 1}, True),
    ('self.all(key, size(key) < 63 && key.matches("^[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?$"))', {"-x": 1}, False),
    ("self.all(l1, self.exists_one(l2, l1.number == l2.number))", [{"number": 80}, {"number": 443}], True),
    ("self.all(l1, self.exists_one(l2, l1.number == l2.number))", [{"number": 80}, {"number": 80}], False),
    ('self.startsWith("unix://") ? (self.substring(7, 8) == "/" || self.substring(7, 8) == "@") : true', "unix:///run/s", True),
    ('self.startsWith("unix://") ? (self.substring(7, 8) == "/" || self.substring(7, 8) == "@") : true', "unix://run/s", False),
    ('self.startsWith("unix://") ? (self.substring(7, 8) == "/" || self.substring(7, 8) == "@") : true', "unix://", None),
    ('url(self).getScheme() in ["http", "https"]', "HTTPS://idp.example.com/jwks", True),
    ('url(self).getScheme() in ["http", "https"]', "ftp://idp.example.com/jwks", False),
    ('url(self).getScheme() in ["http", "https"]', "idp.example.com/jwks", None),
    ('isURL(self) && url(self).getHostname() == "a.example" && url(self).getPort() == "8443"', "https://a.example:8443/x", True),
    ("(has(self.selector) ? 1 : 0) + (has(self.targetRef) ? 1 : 0) + (has(self.targetRefs) ? 1 : 0) <= 1", {"selector": {}, "targetRef": {}}, False),
    ("(has(self.selector) ? 1 : 0) + (has(self.targetRef) ? 1 : 0) + (has(self.targetRefs) ? 1 : 0) <= 1", {"selector": {}}, True),
    ("self.size() == 0", "", True),
    ("self.size() == 0", "other", False),
)


def self_test() -> int:
    """Runs SELF_TEST; raises CelLibraryError listing every case that came out wrong."""
    wrong = []
    for text, value, expected in SELF_TEST:
        rule = compile_rule({"rule": text}, "self-test")
        schema: dict[str, Any] = {}
        problem = _run(rule, to_cel(value, schema))
        got = None if problem and problem.startswith("evaluation error") else problem is None
        if got != expected:
            wrong.append(f"{text!r} on {value!r}: want {expected}, got {got} ({problem})")
    if wrong:
        raise CelLibraryError("the CEL library gives wrong answers: " + "; ".join(wrong))
    return len(SELF_TEST)
