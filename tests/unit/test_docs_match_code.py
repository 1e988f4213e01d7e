"""Generated docs and docker-compose.yml agree with the code they describe."""

from pathlib import Path

import yaml

from services.common.settings import REPO_ROOT, Settings

COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
PROJECT_SERVICES = {n: s for n, s in COMPOSE["services"].items() if s.get("image", "").startswith("cxpt/")}


def test_every_project_service_runs_an_existing_module() -> None:
    for name, service in PROJECT_SERVICES.items():
        module = service["command"][-1]
        path = REPO_ROOT / Path(*module.split("."))
        assert path.with_suffix(".py").exists() or (path / "__main__.py").exists(), name


def test_every_variable_given_to_a_service_is_a_setting() -> None:
    known = {name.upper() for name in Settings.model_fields}
    for name, service in PROJECT_SERVICES.items():
        assert set(service["environment"]) <= known, name


def test_kafka_image_is_the_3_9_line_the_launcher_runs() -> None:
    assert COMPOSE["services"]["kafka"]["image"].startswith("apache/kafka:3.9.")


def test_topic_doc_is_generated_from_the_declarations() -> None:
    from services.common.topics import markdown_table

    assert markdown_table() in (REPO_ROOT / "docs" / "topics.md").read_text()


def test_error_code_doc_is_generated_from_the_code() -> None:
    from services.common.codes import markdown_table as codes_table

    assert codes_table() in (REPO_ROOT / "docs" / "error-codes.md").read_text()
