"""The ESIA adapter's pieces without a provider: signer command, person data, id_token."""

from __future__ import annotations

import time

import pytest

from auth.signin.esia import (
    CommandSigner,
    EsiaClient,
    EsiaError,
    check_id_token_claims,
    normalize_phone,
    parse_person,
)
from gateway.core.auth_settings import AuthSettings
from gateway.core.errors import ErrorCode
from tests.support.signers import ECHO_SIGNER


async def test_command_signer_failures_are_unavailable() -> None:
    assert await CommandSigner(ECHO_SIGNER, 5).sign("abc") == "YWJj"
    for command, timeout in (("false", 5.0), ("/nonexistent/signer", 5.0), ("sleep 5", 0.2)):
        with pytest.raises(EsiaError) as caught:
            await CommandSigner(command, timeout).sign("scope")
        assert caught.value.code is ErrorCode.ESIA_UNAVAILABLE


def test_person_data_is_parsed() -> None:
    person = parse_person(
        "1000299654",
        {
            "firstName": "Елена",
            "lastName": "Смирнова",
            "middleName": "Викторовна",
            "birthDate": "05.03.1985",
            "snils": "112-233-445 95",
            "trusted": True,
        },
        {
            "elements": [
                {"type": "EML", "vrfStu": "VERIFIED", "value": "a@b.ru"},
                {"type": "MBT", "vrfStu": "NOT_VERIFIED", "value": "+7(900)0000000"},
                {"type": "MBT", "vrfStu": "VERIFIED", "value": "+7(912)5550101"},
            ]
        },
    )
    assert person.snils == "11223344595" and person.mobile == "+79125550101"
    assert person.birth_date is not None and person.birth_date.isoformat() == "1985-03-05"
    assert person.trusted and person.full_name == "Смирнова Елена Викторовна"
    unconfirmed = parse_person("1", {"trusted": "true"}, {})
    assert not unconfirmed.trusted and unconfirmed.snils is None and unconfirmed.mobile is None
    with pytest.raises(EsiaError):
        parse_person("1", {"snils": "112-233-445 00"}, {})  # bad checksum
    assert normalize_phone("8 (912) 555-01-01") == "+79125550101"
    assert normalize_phone("12345") is None


def test_id_token_claims_are_checked() -> None:
    good = {"iss": "http://esia/", "aud": "GW", "exp": int(time.time()) + 60, "nonce": "n"}
    check_id_token_claims(good, issuer="http://esia/", client_id="GW", nonce="n")
    for change, code in (
        ({"iss": "http://other/"}, ErrorCode.ESIA_UNAVAILABLE),
        ({"aud": "OTHER"}, ErrorCode.ESIA_UNAVAILABLE),
        ({"exp": int(time.time()) - 3600}, ErrorCode.ESIA_UNAVAILABLE),
        ({"nonce": "replayed"}, ErrorCode.ESIA_STATE_MISMATCH),
    ):
        with pytest.raises(EsiaError) as caught:
            check_id_token_claims(
                {**good, **change}, issuer="http://esia/", client_id="GW", nonce="n"
            )
        assert caught.value.code is code


def test_real_esia_only_over_tls() -> None:
    for url in ("http://esia.example.ru", "ftp://esia.example.ru"):
        with pytest.raises(EsiaError) as caught:
            EsiaClient(AuthSettings(esia_url=url, esia_signer_command="true"))
        assert caught.value.code is ErrorCode.ESIA_NOT_CONFIGURED
    client = EsiaClient(AuthSettings(esia_url="https://esia.gosuslugi.ru", esia_signer_command="x"))
    assert client.endpoints.token == "https://esia.gosuslugi.ru/aas/oauth2/v3/te"
    assert client.endpoints.person("1000299654") == "https://esia.gosuslugi.ru/rs/prns/1000299654"
    assert client.endpoints.issuer == "http://esia.gosuslugi.ru/"
    with pytest.raises(EsiaError) as caught:
        EsiaClient(AuthSettings(esia_url="https://esia.gosuslugi.ru"))  # no signer
    assert caught.value.code is ErrorCode.ESIA_NOT_CONFIGURED
