"""The persons the development identity provider knows, and its one demo password.

Every demo account of fixtures.demo that has a SNILS (the generator plants them in the
school registries), plus persons that exist only in this provider to show a failure:
an ESIA account that is not confirmed (trusted=false).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from auth.esia import normalize_phone
from fixtures import snils as snils_util
from fixtures.demo import DEMO_ACCOUNTS, DemoAccount
from fixtures.generator_people import years_before

# The password of every person of the development identity provider.
DEV_IDP_PASSWORD = "esia-demo"
_FIRST_OID = 1_000_000_100


@dataclass(frozen=True, slots=True)
class DevPerson:
    """An ESIA account as the development provider serves it."""

    key: str
    oid: str
    last_name: str = field(repr=False)
    first_name: str = field(repr=False)
    patronymic: str = field(repr=False)
    gender: str  # M | F
    birth_date: date = field(repr=False)
    snils: str = field(repr=False)  # 11 digits
    mobile: str | None = field(repr=False)  # '+7XXXXXXXXXX'
    trusted: bool = True
    description: str = ""

    @property
    def full_name(self) -> str:
        return f"{self.last_name} {self.first_name} {self.patronymic}"

    def person_json(self) -> dict[str, object]:
        """/rs/prns/{oid}, as ESIA answers it."""
        return {
            "stateFacts": ["EntityRoot"],
            "eTag": f"dev-{self.oid}",
            "firstName": self.first_name,
            "lastName": self.last_name,
            "middleName": self.patronymic,
            "birthDate": self.birth_date.strftime("%d.%m.%Y"),
            "gender": self.gender,
            "trusted": self.trusted,
            "verifying": False,
            "citizenship": "RUS",
            "snils": snils_util.formatted(self.snils),
            "status": "REGISTERED",
        }

    def contacts_json(self) -> dict[str, object]:
        """/rs/prns/{oid}/ctts?embed=(elements), as ESIA answers it."""
        elements: list[dict[str, object]] = []
        if self.mobile is not None:
            digits = self.mobile[2:]
            elements.append(
                {
                    "stateFacts": ["Identifiable"],
                    "id": int(self.oid) % 100000,
                    "type": "MBT",
                    "vrfStu": "VERIFIED",
                    "value": f"+7({digits[:3]}){digits[3:]}",
                    "eTag": f"dev-ctt-{self.oid}",
                }
            )
        return {"stateFacts": ["hasSize"], "size": len(elements), "elements": elements}


def _gender(patronymic: str) -> str:
    return "F" if patronymic.endswith(("вна", "чна")) else "M"


def _birth_date(account: DemoAccount, today: date) -> date:
    if account.student_of is not None:
        parent_key, index = account.student_of
        parent = next(a for a in DEMO_ACCOUNTS if a.key == parent_key)
        return years_before(today, parent.children[index].age_years)
    return years_before(today, 41)


def dev_persons(today: date) -> tuple[DevPerson, ...]:
    """Every person of the development provider (birth dates relative to `today`)."""
    persons = [
        DevPerson(
            key=account.key,
            oid=str(_FIRST_OID + index),
            last_name=account.last_name,
            first_name=account.first_name,
            patronymic=account.patronymic,
            gender=_gender(account.patronymic),
            birth_date=_birth_date(account, today),
            snils=account.snils,
            mobile=account.phone,
            trusted=True,
            description=account.description,
        )
        for index, account in enumerate(DEMO_ACCOUNTS)
        if account.snils
    ]
    persons.append(
        DevPerson(
            key="esia-unconfirmed",
            oid=str(_FIRST_OID + 90),
            last_name="Морозов",
            first_name="Денис",
            patronymic="Олегович",
            gender="M",
            birth_date=years_before(today, 37),
            snils=snils_util.make("864213579"),
            mobile="+79125550190",
            trusted=False,
            description="Учётная запись ЕСИА не подтверждена (упрощённая)",
        )
    )
    return tuple(persons)


def find_person(persons: tuple[DevPerson, ...], login: str) -> DevPerson | None:
    """The person whose SNILS (any format) or mobile phone is `login`."""
    digits = "".join(ch for ch in login if ch.isdigit())
    for person in persons:
        if len(digits) == 11 and digits == person.snils:
            return person
    phone = normalize_phone(login)
    if phone is None:
        return None
    return next((person for person in persons if person.mobile == phone), None)
