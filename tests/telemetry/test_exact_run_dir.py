"""``exact_run_dir``: a run named exactly by the user gets exactly that directory, or a one-line refusal."""

from __future__ import annotations

import pytest

from telemetry_schema.rundir import RunExists, exact_run_dir


def test_a_free_name_is_the_directory_and_create_makes_it(tmp_path):
    assert exact_run_dir(tmp_path / "runs", "a.b_c-1") == tmp_path / "runs" / "a.b_c-1"
    assert not (tmp_path / "runs").exists()  # checked, not made
    assert exact_run_dir(tmp_path / "runs", "a", create=True).is_dir()


def test_a_taken_name_is_refused_and_left_alone(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "run.json").write_text("{}")
    for create in (False, True):
        with pytest.raises(RunExists, match=r"a exists already: choose another --run-name, or add "
                                            r"--run-name-suffix for a-YYYYmmdd-HHMMSS$"):
            exact_run_dir(tmp_path, "a", create=create)
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["run.json"]


def test_create_refuses_a_directory_made_after_the_check(tmp_path, monkeypatch):
    """Two runs asking for one name at once: the one whose mkdir comes second is refused."""
    from pathlib import Path
    real_exists = Path.exists
    monkeypatch.setattr(Path, "exists", lambda self: False if self.name == "a" else real_exists(self))
    (tmp_path / "a").mkdir()
    with pytest.raises(RunExists):
        exact_run_dir(tmp_path, "a", create=True)


@pytest.mark.parametrize("name", ["", "a/b", "../a", "a..b", "-a", "my run", "x" * 129, "ü"])
def test_names_that_are_not_run_ids_are_refused(tmp_path, name):
    with pytest.raises(ValueError, match="--run-name .*: use 1-128 letters, digits and ._-"):
        exact_run_dir(tmp_path, name)
