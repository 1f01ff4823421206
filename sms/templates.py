"""Message templates: `{name}` placeholders, `{{` and `}}` for literal braces (sans-I/O).

Safer than `str.format_map`: only simple names (identifiers, Chinese ones included) are accepted;
attribute and index access (`{a.b}`, `{a[0]}`), positional fields (`{}`, `{0}`), conversions
(`{a!r}`) and format specs (`{a:>999999}`) are refused as `invalid-template`. Values must be text or
numbers. Unknown variables are refused (`unknown-variable`); unused ones are allowed.
"""

from __future__ import annotations

from collections.abc import Mapping
from numbers import Real
from string import Formatter

from sms.errors import InvalidTemplate, InvalidVariable, UnknownVariable

_FORMATTER = Formatter()


def placeholders(template: str) -> list[str]:
    """The names used by `template`, in order of first use; `InvalidTemplate` on bad syntax."""
    try:
        fields = list(_FORMATTER.parse(template))
    except ValueError as exc:
        raise InvalidTemplate(f"bad template: {exc}", details={"why": str(exc)}) from None
    names: list[str] = []
    for _literal, name, spec, conversion in fields:
        if name is None:
            continue
        field = "{" + name + ("!" + conversion if conversion else "") + (":" + spec if spec else "") + "}"
        if not name.isidentifier() or conversion or spec:
            raise InvalidTemplate(
                f"only simple {{name}} placeholders are allowed, not {field}",
                details={"field": field},
            )
        if name not in names:
            names.append(name)
    return names


def render(template: str, variables: Mapping[str, object]) -> str:
    """`template` with each `{name}` replaced by `str(variables[name])`."""
    names = placeholders(template)
    missing = [n for n in names if n not in variables]
    if missing:
        raise UnknownVariable(
            f"the template uses {{{missing[0]}}}, which has no value",
            details={"name": missing[0], "missing": missing},
        )
    for name in names:
        value = variables[name]
        if isinstance(value, bool) or not isinstance(value, (str, Real)):
            raise InvalidVariable(
                f"variable {name} must be text or a number, not {type(value).__name__}",
                details={"name": name, "type": type(value).__name__},
            )
    return template.format_map({n: str(variables[n]) for n in names})
