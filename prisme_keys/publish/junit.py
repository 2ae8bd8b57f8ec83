"""JUnit XML rendering of a ``check`` report, for CI test reporters (GitLab, GitHub)."""

from __future__ import annotations

from prisme_keys.publish.check import FAIL, WARN, Report
from prisme_keys.text import printable


def junit_xml(report: Report) -> str:
    """The report as JUnit XML: one ``testcase`` per check, ``failure`` for fail (and warn when strict).

    Built with :mod:`xml.etree.ElementTree`, every text escaped by :func:`prisme_keys.text.printable`
    first (XML 1.0 cannot hold ESC or other control characters even as references), so the file
    always parses whatever a server published.
    """
    import xml.etree.ElementTree as ET

    failing = {FAIL, WARN} if report.strict else {FAIL}
    fails = str(sum(1 for c in report.checks if c.status in failing))
    total = str(len(report.checks))
    root = ET.Element("testsuites", {"name": "prisme-keys check", "tests": total, "failures": fails})
    suite = ET.SubElement(
        root,
        "testsuite",
        {"name": printable("check " + report.url), "tests": total, "failures": fails, "errors": "0", "skipped": "0"},
    )
    for c in report.checks:
        case = ET.SubElement(
            suite, "testcase", {"classname": printable(c.name.split(".")[0]), "name": printable(c.name)}
        )
        if c.status in failing:
            ET.SubElement(case, "failure", {"message": printable(c.detail), "type": c.status})
        elif c.status == WARN:
            ET.SubElement(case, "system-out").text = printable("warning: " + c.detail)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
