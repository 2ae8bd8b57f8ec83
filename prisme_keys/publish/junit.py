"""JUnit XML rendering of a ``check`` report, for CI test reporters (GitLab, GitHub)."""

from __future__ import annotations

from prisme_keys.publish.check import FAIL, WARN, Report


def junit_xml(report: Report) -> str:
    """The report as JUnit XML: one ``testcase`` per check, ``failure`` for fail (and warn when strict)."""
    from xml.sax.saxutils import quoteattr

    failing = {FAIL, WARN} if report.strict else {FAIL}
    fails = sum(1 for c in report.checks if c.status in failing)
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<testsuites name="prisme-keys check" tests="{len(report.checks)}" failures="{fails}">',
        f'  <testsuite name={quoteattr("check " + report.url)} tests="{len(report.checks)}" '
        f'failures="{fails}" errors="0" skipped="0">',
    ]
    for c in report.checks:
        head = f"    <testcase classname={quoteattr(c.name.split('.')[0])} name={quoteattr(c.name)}"
        if c.status in failing:
            lines.append(head + ">")
            lines.append(f"      <failure message={quoteattr(c.detail)} type={quoteattr(c.status)}/>")
            lines.append("    </testcase>")
        elif c.status == WARN:
            lines.append(head + ">")
            lines.append(f"      <system-out>{_esc('warning: ' + c.detail)}</system-out>")
            lines.append("    </testcase>")
        else:
            lines.append(head + "/>")
    lines += ["  </testsuite>", "</testsuites>", ""]
    return "\n".join(lines)


def _esc(text: str) -> str:
    from xml.sax.saxutils import escape

    return escape(text)
