"""JSON Schema checks for bundle manifests and model configs (``manifest.schema.json``).

The schema file is the one statement of every manifest field's type, range and required keys;
``check(instance, "#/$defs/encoder", what)`` validates any part of it and raises FormatError
naming the JSON path, the expected form and the value found. ``parse_json`` is the bounded
parser every manifest goes through: no NaN/Infinity, no duplicate keys, no nesting past
``MAX_DEPTH``, and RecursionError/huge-integer errors turned into FormatError.
"""

from __future__ import annotations

import functools
import json
import numbers
from importlib import resources
from typing import Any

from huma_rt.errors import FormatError

SCHEMA_FILE = "manifest.schema.json"
MAX_DEPTH = 8  # a valid manifest nests 4 deep (camera.world_to_camera rows); 8 leaves room
# a valid manifest has ~100 objects/arrays and ~500 values (64 files at most): counted on the raw
# bytes before parsing, these caps bound every Python-level pass (parse hooks, depth, schema)
MAX_CONTAINERS = 2048
MAX_SEPARATORS = 16384


@functools.cache
def schema() -> dict[str, Any]:
    """The parsed manifest schema shipped in this package."""
    return json.loads(resources.files("huma_rt.bundle").joinpath(SCHEMA_FILE).read_text(encoding="utf-8"))


@functools.cache
def _validator(pointer: str):
    import jsonschema
    from jsonschema import Draft202012Validator

    # JSON Schema's "integer" admits 1.0; the runtime's fields are Python ints, so refuse floats
    # (and booleans, which Python counts as ints)
    checker = Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _c, v: isinstance(v, numbers.Integral) and not isinstance(v, bool)
    ).redefine("number", lambda _c, v: isinstance(v, numbers.Real) and not isinstance(v, bool))
    cls = jsonschema.validators.extend(Draft202012Validator, type_checker=checker)
    root = schema()
    target = root if pointer == "#" else root["$defs"][pointer.removeprefix("#/$defs/")]
    return cls(_inline(target, root["$defs"]))


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    """The schema with every local ``$ref`` replaced by ``allOf: [<definition>]`` (same meaning,
    the schema has no recursion): validation then skips reference resolution, ~5x faster."""
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: _inline(v, defs) for k, v in node.items() if k not in ("$ref", "$defs")}
    ref = node.get("$ref")
    if ref is not None:
        out["allOf"] = [*out.get("allOf", []), _inline(defs[ref.removeprefix("#/$defs/")], defs)]
    return out


def check(instance: Any, pointer: str, what: str) -> None:
    """Validate ``instance`` against the schema at ``pointer`` ("#" or "#/$defs/<name>").

    Raises FormatError for the first violation: ``"<what>: field $.encoder.mel.hop must be >= 1;
    got 0"``. Only the first is looked for: errors are produced lazily in the schema's keyword
    order, where every size cap (maxItems, maxProperties) comes before the per-item rules, so a
    hostile manifest never costs more than one pass over a capped container.
    """
    first = next(_validator(pointer).iter_errors(instance), None)
    if first is not None:
        raise FormatError(f"{what}: field {first.json_path} {_expected(first)}; got {describe(first.instance)}")


def _expected(err) -> str:
    """What the schema wanted, in words; never the (possibly huge) instance itself."""
    v, kw = err.validator_value, err.validator
    words = {
        "type": f"must be of type {v}",
        "minimum": f"must be >= {v}",
        "maximum": f"must be <= {v}",
        "exclusiveMinimum": f"must be > {v}",
        "exclusiveMaximum": f"must be < {v}",
        "const": f"must be {json.dumps(v)}",
        "pattern": f"must match the pattern {v}",
        "minItems": f"must have at least {v} items",
        "maxItems": f"must have at most {v} items",
        "minLength": f"must have at least {v} characters",
        "maxLength": f"must have at most {v} characters",
        "minProperties": f"must have at least {v} keys",
        "maxProperties": f"must have at most {v} keys",
        "uniqueItems": "must not repeat an item",
    }
    if kw in words:
        return words[kw]
    if kw == "enum":
        return f"must be one of {json.dumps(v)}"
    if kw == "required":
        missing = [k for k in v if isinstance(err.instance, dict) and k not in err.instance]
        return f"lacks the required key(s) {missing}"
    if kw == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        extra = sorted(k for k in err.instance if k not in allowed)[:5] if isinstance(err.instance, dict) else []
        return f"has unknown key(s) {[k[:40] for k in extra]}; allowed: {allowed}"
    if kw == "unevaluatedProperties":
        return f"has a key the schema does not allow ({err.message[:120]})"
    if kw == "false":
        return "is not allowed here"
    return f"breaks the schema rule {kw!r}: {err.message[:200]}"


def describe(value: Any, limit: int = 80) -> str:
    """A short, non-recursive description of any JSON value for error messages."""
    if isinstance(value, dict):
        keys = [describe(k, 20) for k in list(value)[:5]]
        return f"an object with {len(value)} key(s) {keys}"
    if isinstance(value, list):
        return f"a list of {len(value)} item(s)"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def parse_json(data: bytes | str, what: str) -> Any:
    """json.loads with limits: FormatError for invalid JSON, NaN/Infinity, numbers that overflow
    a float, integers past Python's digit limit, duplicate keys and nesting deeper than MAX_DEPTH."""

    def no_constant(name: str):
        raise FormatError(f"{what} is not strict JSON: {name} is not a number JSON allows")

    def finite_float(text: str) -> float:
        v = float(text)
        if v in (float("inf"), float("-inf")):
            raise FormatError(f"{what}: number {describe(text)} overflows a 64-bit float")
        return v

    def unique_keys(pairs):
        d = dict(pairs)
        if len(d) != len(pairs):
            seen, dup = set(), None
            for k, _ in pairs:
                if k in seen:
                    dup = k
                    break
                seen.add(k)
            raise FormatError(f"{what} repeats the key {describe(dup)} in one object")
        return d

    raw = data.encode("utf-8", "replace") if isinstance(data, str) else bytes(data)
    containers, separators = raw.count(b"{") + raw.count(b"["), raw.count(b",")
    if containers > MAX_CONTAINERS or separators > MAX_SEPARATORS:
        raise FormatError(
            f"{what} is too large a JSON document: {containers} '{{'/'[' and {separators} ',' "
            f"(at most {MAX_CONTAINERS} and {MAX_SEPARATORS}; a manifest has a few hundred)"
        )
    try:
        value = json.loads(data, parse_constant=no_constant, parse_float=finite_float, object_pairs_hook=unique_keys)
    except RecursionError as exc:
        raise FormatError(f"{what} nests too deeply (limit {MAX_DEPTH} levels)") from exc
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError, and int() past 4300 digits
        raise FormatError(f"{what} is not valid JSON: {str(exc)[:200]}") from exc
    _check_depth(value, what)
    return value


def _check_depth(value: Any, what: str) -> None:
    # iterative (no recursion to exhaust); a path is a linked list of (parent, key) built only on failure
    stack: list[tuple[Any, int, Any]] = [(value, 1, None)] if isinstance(value, (dict, list)) else []
    while stack:
        v, depth, link = stack.pop()
        if depth > MAX_DEPTH:
            keys = []
            while link is not None:
                link, key = link
                keys.append(f"[{key}]" if isinstance(key, int) else f".{key[:30]}")
            raise FormatError(f"{what} nests too deeply at ${''.join(reversed(keys))} (limit {MAX_DEPTH} levels)")
        for k, x in v.items() if isinstance(v, dict) else enumerate(v):
            if isinstance(x, (dict, list)):  # scalars cannot nest: only containers go on the stack
                stack.append((x, depth + 1, (link, k)))
