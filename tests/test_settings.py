"""Flags, environment variables and defaults map onto one frozen Settings."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest

from mockserver.cli import build_parser
from mockserver.settings import Settings


def parse(*argv: str, env: dict[str, str] | None = None) -> Settings:
    return Settings.from_args(build_parser().parse_args(["serve", *argv]), env or {})


def test_defaults() -> None:
    s = parse()
    assert (s.host, s.port, s.task_seconds) == ("127.0.0.1", 8000, 8.0)
    assert (s.batch_size_policy, s.task_dialect, s.unified_url_shape) == ("strict", "unified", "list")
    assert s.unified_video_items == "per-clip"
    assert s.public_url is None
    assert s.control is True
    assert s.task_retention_seconds == 3 * 86400
    assert s.media_ttl_seconds == 3 * 86400
    assert (s.upload_ttl_seconds, s.max_upload_bytes) == (3 * 86400, 20 * 1024 * 1024)
    assert (s.usd_per_credit, s.api_keys) == (0.1, None)


def test_config_file_under_variables_under_flags(tmp_path: Path) -> None:
    config = tmp_path / "fake.yaml"
    config.write_text("task_dialect: mj\nunified-url-shape: string\ntask_seconds: 3.5\ncontrol: false\n")
    s = parse("--config", str(config))
    assert (s.task_dialect, s.unified_url_shape, s.task_seconds, s.control) == ("mj", "string", 3.5, False)
    s = parse("--config", str(config), env={"MOCKSERVER_TASK_SECONDS": "7"})
    assert s.task_seconds == 7.0
    s = parse("--config", str(config), "--task-seconds", "1", env={"MOCKSERVER_TASK_SECONDS": "7"})
    assert s.task_seconds == 1.0


@pytest.mark.parametrize(
    ("text", "words"),
    [("colour: red\n", "unknown setting 'colour'"), ("- a\n", "mapping"), ("task_seconds: soon\n", "task_seconds")],
)
def test_config_file_refusals(tmp_path: Path, text: str, words: str) -> None:
    config = tmp_path / "fake.yaml"
    config.write_text(text)
    with pytest.raises((ValueError, argparse.ArgumentTypeError), match=words):
        parse("--config", str(config))


def test_enumerations_read_case_insensitively() -> None:
    assert parse(env={"MOCKSERVER_LOG_LEVEL": "INFO", "MOCKSERVER_TASK_DIALECT": "MJ"}).log_level == "info"
    assert parse(env={"MOCKSERVER_TASK_DIALECT": "MJ"}).task_dialect == "mj"


@pytest.mark.parametrize("value", ["nan", "inf", "-1"])
def test_numbers_must_be_finite(value: str) -> None:
    with pytest.raises(ValueError, match="finite"):
        parse("--task-seconds", value)


def test_every_issue_flag() -> None:
    s = parse(
        "--host", "0.0.0.0", "--port", "9000", "--task-seconds", "2.5", "--batch-size-policy", "coerce",
        "--task-dialect", "unified", "--public-url", "https://fake.test", "--no-control",
    )  # fmt: skip
    assert (s.host, s.port, s.task_seconds) == ("0.0.0.0", 9000, 2.5)
    assert (s.batch_size_policy, s.task_dialect, s.public_url, s.control) == (
        "coerce",
        "unified",
        "https://fake.test",
        False,
    )


def test_environment_and_precedence() -> None:
    env = {"MOCKSERVER_TASK_SECONDS": "0", "MOCKSERVER_TASK_DIALECT": "unified", "MOCKSERVER_CONTROL": "false"}
    s = parse(env=env)
    assert (s.task_seconds, s.task_dialect, s.control) == (0.0, "unified", False)
    assert parse("--task-dialect", "mj", env=env).task_dialect == "mj"


def test_round_trip_through_environment() -> None:
    s = Settings(task_seconds=3, batch_size_policy="coerce", public_url="http://x", control=False)
    assert Settings.from_env(s.to_env()) == s


def test_every_field_is_a_flag_and_a_variable() -> None:
    parser = argparse.ArgumentParser()
    Settings.add_arguments(parser)
    help_text = parser.format_help()
    for f in dataclasses.fields(Settings):
        assert "--" + f.name.replace("_", "-") in help_text
        assert "MOCKSERVER_" + f.name.upper() in help_text


@pytest.mark.parametrize(
    "env",
    [{"MOCKSERVER_BATCH_SIZE_POLICY": "lenient"}, {"MOCKSERVER_TASK_SECONDS": "-1"}, {"MOCKSERVER_PORT": "x"}],
)
def test_bad_values_refused(env: dict[str, str]) -> None:
    with pytest.raises((ValueError, argparse.ArgumentTypeError)):
        Settings.from_env(env)


def test_every_setting_is_in_the_settings_page() -> None:
    """docs/settings.md lists every flag of ``mockserver serve`` (one name per idea, in code and docs)."""
    import dataclasses
    from pathlib import Path

    page = (Path(__file__).resolve().parent.parent / "docs" / "settings.md").read_text(encoding="utf-8")
    missing = [f.name for f in dataclasses.fields(Settings) if f"`--{f.name.replace('_', '-')}" not in page]
    assert missing == [], f"docs/settings.md does not list {missing}"
