"""Each setting is named once, in `batchgen.constants`, and `Settings` declares exactly those names."""

from __future__ import annotations

from batchgen import constants
from batchgen.config import Settings

# Read by libraries, not by Settings.
NOT_SETTINGS = {constants.ENV_LOG_LEVEL}


def _constant_names() -> set[str]:
    return {value for name, value in vars(constants).items() if name.startswith("ENV_") and isinstance(value, str)}


def test_every_settings_field_is_named_in_constants() -> None:
    fields = {name.upper() for name in Settings.model_fields}
    assert fields - _constant_names() == set(), "add an ENV_* constant for each"


def test_every_named_setting_has_a_settings_field() -> None:
    fields = {name.upper() for name in Settings.model_fields}
    assert _constant_names() - NOT_SETTINGS - fields == set(), "add a Settings field for each"


def test_settings_defaults_are_the_constants() -> None:
    settings = Settings()
    assert settings.max_batch_requests == constants.MAX_BATCH_REQUESTS_DEFAULT
    assert settings.max_wait_seconds == constants.MAX_WAIT_SECONDS_DEFAULT
    assert settings.gemini_max_active_jobs == constants.GEMINI_MAX_ACTIVE_JOBS_DEFAULT
    assert settings.gemini_source_mode == constants.GEMINI_SOURCE_MODE_DEFAULT
    assert settings.cloudinary_folder == constants.CLOUDINARY_FOLDER_DEFAULT
    assert settings.jwt_algorithms == constants.JWT_ALGORITHMS_DEFAULT
    assert settings.auth_cookie_name == constants.AUTH_COOKIE_NAME_DEFAULT
    assert settings.cors_origins == constants.CORS_ORIGINS_DEFAULT


def test_settings_read_the_constant_names_from_the_environment() -> None:
    settings = Settings.from_environ({constants.ENV_MAX_BATCH_REQUESTS: "7", constants.ENV_CORS_ORIGINS: "https://a"})
    assert (settings.max_batch_requests, settings.cors_origins) == (7, "https://a")
