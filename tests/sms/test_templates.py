import pytest

from sms.errors import InvalidTemplate, InvalidVariable, SmsError, UnknownVariable
from sms.templates import placeholders, render


def test_render():
    assert render("{name}请于{time}到{place}报到", {"name": "张三", "time": "20:00", "place": "防汛指挥部"}) == (
        "张三请于20:00到防汛指挥部报到"
    )


def test_unused_variables_allowed_and_numbers():
    assert render("level {level}", {"level": 3, "unused": "x"}) == "level 3"
    assert render("rain {mm} mm", {"mm": 12.5}) == "rain 12.5 mm"


def test_chinese_names_and_literal_braces():
    assert render("{姓名}: {{ok}}", {"姓名": "李四"}) == "李四: {ok}"


def test_values_are_not_reinterpreted():
    assert render("{a}", {"a": "{b.__class__}"}) == "{b.__class__}"


def test_placeholders_in_order():
    assert placeholders("{b} {a} {b}") == ["b", "a"]
    assert placeholders("no fields") == []


def test_unknown_variable_named():
    with pytest.raises(UnknownVariable) as err:
        render("{name} at {place} by {time}", {"name": "x"})
    assert isinstance(err.value, SmsError)
    assert err.value.reason == "unknown-variable"
    assert err.value.details == {"name": "place", "missing": ["place", "time"]}
    assert "place" in err.value.message


@pytest.mark.parametrize(
    "template",
    ["{a.__class__}", "{a[0]}", "{}", "{0}", "{a!r}", "{a:>999999}", "{a:{a}}", "{a", "a}", "{ a }", "{a-b}"],
)
def test_invalid_template(template):
    with pytest.raises(InvalidTemplate) as err:
        render(template, {"a": "x"})
    assert err.value.reason == "invalid-template"
    assert err.value.details


@pytest.mark.parametrize("value", [None, True, ["x"], {"x": 1}, object()])
def test_invalid_variable(value):
    with pytest.raises(InvalidVariable) as err:
        render("{a}", {"a": value})
    assert err.value.reason == "invalid-variable"
    assert err.value.details["name"] == "a"
