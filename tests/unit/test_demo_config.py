"""The demo's configuration: phones the demo's SIPp phones answer for, and its recording rule."""

from __future__ import annotations

from callcenter.config import load_config
from callcenter_devtools.demo import PHONE_ADDRESS, demo_config


def test_the_demo_gives_phones_contacts_and_records_vip_callers_by_rule() -> None:
    config = demo_config(load_config(environ={}))
    assert all(phone.contact and PHONE_ADDRESS in phone.contact for phone in config.sip.phones)
    assert config.recordings.record_tiers == ["vip"]


def test_the_demo_keeps_recording_rules_of_the_configuration() -> None:
    config = demo_config(load_config(environ={"CALLCENTER_RECORDINGS_RECORD_QUEUES": '["expert"]'}))
    assert config.recordings.record_tiers == []
    assert config.recordings.record_queues == ["expert"]
