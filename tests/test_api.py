"""The public Python API (prisme_keys.api) as the README shows it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from prisme_keys import api
from prisme_keys.errors import ClaimsRejected, KeyFileError

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_python_api_example_runs_as_written(tmp_path, monkeypatch):
    section = README.read_text().split("### Python API", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PRISME_KEYS_CONFIG", str(tmp_path / "none.toml"))
    (tmp_path / "none.toml").write_text("")
    exec(compile(code, "README.md", "exec"), {})
    assert (tmp_path / "keys.json").stat().st_mode & 0o777 == 0o600


def test_api_lifecycle_and_tokens(tmp_path):
    s = api.settings_from(
        {"key_file": tmp_path / "k.json", "oidc_provider_url": "https://i.test", "api_url": "https://a.test"}
    )
    created = api.init(s)
    kid = created.record["kid"]
    assert [k["kid"] for k in api.export(s)["keys"]] == [kid]
    token = api.mint(s, sub="bob", lifetime=60)
    res = api.verify(token, s)
    assert (res.kid, res.claims["sub"], res.claims["iss"], res.claims["aud"]) == (
        kid,
        "bob",
        "https://i.test",
        "https://a.test",
    )
    expired = api.mint(s, sub="bob", expired=True)
    with pytest.raises(ClaimsRejected) as exc:
        api.verify(expired, s)
    assert (exc.value.code, int(exc.value.exit_code)) == ("expired", 7)
    assert api.decode(expired).claims["sub"] == "bob"
    with pytest.raises(KeyFileError) as exc:
        api.init(s)
    assert exc.value.code == "key_file_exists"
