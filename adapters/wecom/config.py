"""The WeChat / WeCom section of the settings: every account this package serves, and the API hosts.

Each list is one environment variable holding JSON (``SIYU_WECOM_KF='[{"name": ...}]'``); the
names are the ones the README and ``.env.example`` document. An account's ``name`` is part of its
callback URL, so names are unique within a channel.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from bot.config import Section, unique_names

WECOM_API = "https://qyapi.weixin.qq.com"
WECHAT_API = "https://api.weixin.qq.com"


class _Account(BaseModel):
    """Fields every WeChat / WeCom account has: a name (used in callback URLs) and a store scope."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    store_id: str | None = None


class CallbackAccount(_Account):
    """An account whose platform calls us back: the callback Token and EncodingAESKey."""

    token: SecretStr
    encoding_aes_key: SecretStr | None = None  # required for WeCom; OA plain mode has none


class KfAccount(CallbackAccount):
    """WeCom customer service (微信客服): ``SIYU_WECOM_KF`` entries. Callback URL
    ``/wecom/kf/<name>``; ``secret`` is the 微信客服 Secret of the corp."""

    corp_id: str
    secret: SecretStr
    welcome: str = "您好，我是智能客服，有什么可以帮您？回复“人工”可转人工客服。"
    servicer_userid: str | None = None  # hand off to this agent; empty: the human queue


class WeComAppAccount(CallbackAccount):
    """A WeCom self-built app for store staff: ``SIYU_WECOM_APPS`` entries. Callback URL
    ``/wecom/app/<name>``."""

    corp_id: str
    agent_id: int
    secret: SecretStr


class OfficialAccountConfig(CallbackAccount):
    """An Official Account (公众号): ``SIYU_OFFICIAL_ACCOUNTS`` entries. Callback URL
    ``/wechat/oa/<name>``. ``mode`` is the admin page's 消息加解密方式."""

    app_id: str
    secret: SecretStr
    mode: Literal["plain", "compatible", "safe"] = "safe"
    reply_budget_seconds: float = Field(default=4.5, gt=0, le=4.8)


class RobotAccount(_Account):
    """A WeCom group robot (send-only): ``SIYU_WECOM_ROBOTS`` entries.

    ``key`` is the ``key=`` of the robot's webhook URL."""

    key: SecretStr


class ContactAccount(BaseModel):
    """WeCom customer contact (客户联系): ``SIYU_WECOM_CONTACT``, e.g.
    ``{"corp_id": "ww...", "secret": "..."}`` with the 客户联系 Secret. Campaigns create
    ``add_msg_template`` tasks with it for members' staff owners to confirm."""

    model_config = ConfigDict(frozen=True)

    corp_id: str
    secret: SecretStr


class WeComSettings(Section):
    """Every WeChat / WeCom account, by channel, and the platform API hosts (tests point these at
    a fake server)."""

    kf: list[KfAccount] = Field(default_factory=list, validation_alias="SIYU_WECOM_KF")
    apps: list[WeComAppAccount] = Field(default_factory=list, validation_alias="SIYU_WECOM_APPS")
    official_accounts: list[OfficialAccountConfig] = Field(
        default_factory=list, validation_alias="SIYU_OFFICIAL_ACCOUNTS"
    )
    robots: list[RobotAccount] = Field(default_factory=list, validation_alias="SIYU_WECOM_ROBOTS")
    contact: ContactAccount | None = Field(default=None, validation_alias="SIYU_WECOM_CONTACT")
    api_base: str = Field(default=WECOM_API, validation_alias="SIYU_WECOM_API_BASE")
    wechat_api_base: str = Field(default=WECHAT_API, validation_alias="SIYU_WECHAT_API_BASE")

    @field_validator("kf", "apps", "official_accounts", "robots")
    @classmethod
    def _unique(cls, value: list[_Account]) -> list[_Account]:
        return list(unique_names(value))

    def robot(self, name: str) -> RobotAccount | None:
        """The group robot called ``name``, if one is configured."""
        return next((r for r in self.robots if r.name == name), None)
