"""How to reach a bucket: the endpoint, region and credentials profile from the
configuration (keys `s3_endpoint_url`, `s3_region`, `s3_profile`), and the credentials
themselves, resolved by botocore's standard AWS chain.

The chain is the one every AWS tool follows: the AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY
/ AWS_SESSION_TOKEN variables, then the shared files (~/.aws/credentials, ~/.aws/config,
or AWS_SHARED_CREDENTIALS_FILE / AWS_CONFIG_FILE) for the profile (`s3_profile`, else
AWS_PROFILE, else `default`), then web identity, container and instance credentials.
Temporary credentials are refreshed by botocore before they expire.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone

from .errors import StorageAccessError

log = logging.getLogger(__name__)

DEFAULT_REGION = "us-east-1"


@dataclass(frozen=True, slots=True)
class S3Settings:
    """The configuration of object storage access (None: the AWS chain's own default)."""

    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None
    retries: int = 5
    timeout: float = 30.0

    @classmethod
    def from_config(cls, config) -> S3Settings:
        """The settings of a loaded `Config` (cas-sync's, cas-server's, cas-index's)."""
        values = config.values
        return cls(values.get("s3_endpoint_url"), values.get("s3_region"),
                   values.get("s3_profile"), int(values.get("retries", 5)),
                   float(values.get("timeout", 30.0)))

    def to_json(self) -> str:
        """For handing the settings to worker processes (cas-server) in the environment."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> S3Settings:
        return cls(**json.loads(text))


class CredentialChain:
    """An obstore credential provider backed by botocore's credential chain: called by
    obstore whenever it needs credentials, it hands out botocore's current ones (which
    botocore refreshes when they are temporary)."""

    def __init__(self, settings: S3Settings):
        import botocore.exceptions
        import botocore.session

        try:
            session = botocore.session.Session(profile=settings.profile)
            credentials = session.get_credentials()
            self.region = (settings.region or session.get_config_variable("region")
                           or DEFAULT_REGION)
        except botocore.exceptions.ProfileNotFound:
            raise StorageAccessError(
                f"s3_profile: the AWS profile {settings.profile!r} is not in the shared "
                "config or credentials files (~/.aws/config, ~/.aws/credentials)") from None
        except botocore.exceptions.BotoCoreError as exc:
            raise StorageAccessError(f"AWS credentials: {exc}") from None
        if credentials is None:
            raise StorageAccessError(
                "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                "write ~/.aws/credentials, or name a profile with s3_profile")
        self._credentials = credentials
        log.debug("S3 credentials from %s, region %s", credentials.method, self.region)

    def __call__(self) -> dict:
        frozen = self._credentials.get_frozen_credentials()
        # Refreshable credentials: ask again in a few minutes (botocore refreshes them
        # ahead of expiry); static ones never expire.
        refreshable = getattr(self._credentials, "refresh_needed", None) is not None
        expires = (datetime.now(timezone.utc) + timedelta(minutes=5)) if refreshable else None
        return {"access_key_id": frozen.access_key, "secret_access_key": frozen.secret_key,
                "token": frozen.token, "expires_at": expires}
