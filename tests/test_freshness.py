"""JWKS freshness, table-tested against RFC 9111 sections 4.2.1-4.2.3, 5.1, 5.2 and 5.3.

Each row: response headers, then the expected freshness lifetime, the corrected initial age, and
the last second (after the response) at which the stored set is still fresh (``None``: stale at
once). The request is sent at ``T`` and answered at ``T`` unless the row says otherwise.
"""

from __future__ import annotations

from email.utils import formatdate

import pytest

from prisme_keys.tokens.freshness import (
    DEFAULT_MAX_AGE,
    MAX_CACHE_AGE,
    freshness,
    parse_age,
    parse_cache_control,
    parse_http_date,
)

T = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def date(offset: float) -> str:
    """The HTTP-date (IMF-fixdate) ``offset`` seconds after ``T``."""
    return formatdate(T + offset, usegmt=True)


# (id, headers, lifetime, initial_age, last fresh second or None, source)
TABLE = [
    # 4.2.2: no explicit lifetime -> the heuristic lifetime
    ("none", {}, DEFAULT_MAX_AGE, 0, DEFAULT_MAX_AGE - 1, "heuristic"),
    ("empty", {"cache-control": ""}, DEFAULT_MAX_AGE, 0, DEFAULT_MAX_AGE - 1, "heuristic"),
    # 4.2.1 / 5.2.2.1: max-age
    ("max-age", {"cache-control": "max-age=600"}, 600, 0, 599, "max-age"),
    ("max-age=0", {"cache-control": "max-age=0"}, 0, 0, None, "max-age"),
    ("quoted", {"cache-control": 'max-age="600"'}, 600, 0, 599, "max-age"),
    ("upper case name", {"cache-control": "MAX-AGE=600"}, 600, 0, 599, "max-age"),
    ("same twice", {"cache-control": "max-age=60, max-age=60"}, 60, 0, 59, "max-age"),
    ("huge", {"cache-control": "max-age=99999999999999999999"}, MAX_CACHE_AGE, 0, MAX_CACHE_AGE - 1, "max-age"),
    # 4.2.1: invalid freshness information -> stale, never the heuristic
    ("max-age=-1", {"cache-control": "max-age=-1"}, 0, 0, None, "invalid max-age"),
    ("max-age=abc", {"cache-control": "max-age=abc"}, 0, 0, None, "invalid max-age"),
    ("max-age empty", {"cache-control": "max-age="}, 0, 0, None, "invalid max-age"),
    ("max-age no value", {"cache-control": "max-age"}, 0, 0, None, "invalid max-age"),
    ("max-age decimal", {"cache-control": "max-age=1.5"}, 0, 0, None, "invalid max-age"),
    ("conflicting twice", {"cache-control": "max-age=600, max-age=60"}, 0, 0, None, "invalid max-age"),
    (
        "invalid beats Expires",
        {"cache-control": "max-age=abc", "date": date(0), "expires": date(3600)},
        0,
        0,
        None,
        "invalid max-age",
    ),
    # shared-cache directives are ignored by a private cache
    ("s-maxage and max-age", {"cache-control": "s-maxage=3600, max-age=60"}, 60, 0, 59, "max-age"),
    ("s-maxage alone", {"cache-control": "s-maxage=3600"}, DEFAULT_MAX_AGE, 0, DEFAULT_MAX_AGE - 1, "heuristic"),
    # 5.2.2.5 no-store / 5.2.2.4 no-cache
    ("no-store", {"cache-control": "no-store, max-age=600"}, 0, 0, None, "no-store"),
    ("no-cache", {"cache-control": "no-cache"}, 0, 0, None, "no-cache"),
    ("no-cache with fields", {"cache-control": 'no-cache="Set-Cookie", max-age=600'}, 0, 0, None, "no-cache"),
    ("max-age and no-cache", {"cache-control": "max-age=600, no-cache"}, 0, 0, None, "no-cache"),
    ("quoted comma", {"cache-control": 'no-cache="a, b", max-age=30'}, 0, 0, None, "no-cache"),
    # 5.2.3: unknown and irrelevant directives are ignored
    ("extensions", {"cache-control": "foo=bar, immutable, max-age=30"}, 30, 0, 29, "max-age"),
    ("private", {"cache-control": "private, max-age=30"}, 30, 0, 29, "max-age"),
    ("must-revalidate", {"cache-control": "must-revalidate, max-age=30"}, 30, 0, 29, "max-age"),
    ("two field lines joined", {"cache-control": "public, max-age=600"}, 600, 0, 599, "max-age"),
    # 4.2.1 / 5.3: Expires minus Date
    ("Expires", {"date": date(0), "expires": date(300)}, 300, 0, 299, "expires"),
    ("Expires in the past", {"date": date(0), "expires": date(-10)}, 0, 0, None, "expires"),
    ("Expires: 0", {"expires": "0"}, 0, 0, None, "invalid expires"),
    ("Expires: -1", {"date": date(0), "expires": "-1"}, 0, 0, None, "invalid expires"),
    (
        "max-age beats Expires",
        {"cache-control": "max-age=60", "date": date(0), "expires": date(3600)},
        60,
        0,
        59,
        "max-age",
    ),
    ("Expires without Date", {"expires": date(300)}, 300, 0, 299, "expires"),
    ("Expires, invalid Date", {"date": "yesterday", "expires": date(300)}, 300, 0, 299, "expires"),
    (
        "Expires asctime",
        {"date": "Thu Jan  1 00:00:00 2026", "expires": "Thu Jan  1 00:05:00 2026"},
        300,
        0,
        299,
        "expires",
    ),
    (
        "Expires RFC 850",
        {"date": "Thursday, 01-Jan-26 00:00:00 GMT", "expires": "Thursday, 01-Jan-26 00:05:00 GMT"},
        300,
        0,
        299,
        "expires",
    ),
    # 4.2.3 / 5.1: age
    ("Age 590", {"cache-control": "public, max-age=600", "age": "590"}, 600, 590, 9, "max-age"),
    ("Age over max-age", {"cache-control": "max-age=600", "age": "700"}, 600, 700, None, "max-age"),
    ("Age invalid", {"cache-control": "max-age=600", "age": "abc"}, 600, 0, 599, "max-age"),
    ("Age negative", {"cache-control": "max-age=600", "age": "-5"}, 600, 0, 599, "max-age"),
    ("Age list", {"cache-control": "max-age=600", "age": "590, 10"}, 600, 590, 9, "max-age"),
    ("apparent age", {"cache-control": "max-age=60", "date": date(-100)}, 60, 100, None, "max-age"),
    ("Date in the future", {"cache-control": "max-age=60", "date": date(100)}, 60, 0, 59, "max-age"),
]


@pytest.mark.parametrize(
    "headers,lifetime,initial_age,last_fresh,source", [r[1:] for r in TABLE], ids=[r[0] for r in TABLE]
)
def test_freshness_table(headers, lifetime, initial_age, last_fresh, source):
    fr = freshness(headers, request_time=T, response_time=T)
    assert (fr.lifetime, fr.initial_age, fr.source) == (lifetime, initial_age, source)
    assert fr.storable == (source != "no-store")
    if last_fresh is None:
        assert not fr.is_fresh(T, T)
    else:
        assert fr.is_fresh(T, T + last_fresh) and not fr.is_fresh(T, T + last_fresh + 1)


def test_response_delay_counts_as_age():
    # 4.2.3: corrected_age_value = age_value + (response_time - request_time)
    fr = freshness({"cache-control": "max-age=600", "age": "590"}, request_time=T, response_time=T + 2)
    assert fr.initial_age == 592
    assert fr.is_fresh(T + 2, T + 9.9) and not fr.is_fresh(T + 2, T + 10)


def test_clock_going_back_is_stale():
    fr = freshness({"cache-control": "max-age=600"}, request_time=T, response_time=T)
    assert fr.is_fresh(T, T - 30)  # a little clock skew is tolerated
    assert not fr.is_fresh(T, T - 120)


def test_heuristic_is_a_parameter():
    assert freshness({}, request_time=T, response_time=T, heuristic=30).lifetime == 30


def test_detail_names_the_age():
    fr = freshness({"cache-control": "public, max-age=600", "age": "590"}, request_time=T, response_time=T)
    assert fr.detail == "max-age 600 minus Age 590"
    assert fr.remaining(T, T) == 10


@pytest.mark.parametrize(
    "value,expected",
    [
        ('no-cache="a, b", max-age=30, Private', {"no-cache": "a, b", "max-age": "30", "private": None}),
        ('foo="x\\"y", bar', {"foo": 'x"y', "bar": None}),
        (" , max-age=5 ,, ", {"max-age": "5"}),
    ],
)
def test_cache_control_directives(value, expected):
    assert parse_cache_control(value).directives == expected


def test_max_age_problem_wording():
    assert parse_cache_control("max-age=abc").max_age_problem == "max-age has 'abc', not a whole number of seconds"
    assert (
        parse_cache_control("max-age=").max_age_problem == "max-age has an empty value, not a whole number of seconds"
    )
    assert parse_cache_control("max-age=1, max-age=2").max_age_problem == "max-age is given twice with different values"


@pytest.mark.parametrize("value", ["0", "", "-1", "tomorrow", "Thu, 32 Jan 2026 00:00:00 GMT"])
def test_invalid_http_dates(value):
    assert parse_http_date(value) is None


@pytest.mark.parametrize("value,expected", [("5", 5), (" 5 ", 5), ("5, 7", 5), ("x", None), ("", None), ("1e3", None)])
def test_age_values(value, expected):
    assert parse_age(value) == expected
