"""Customers: finding their files (by a caller's number, by name, by id), creating and changing them with their
numbers and contacts, and what a number says about its owners (who they are, the best tier among them).

Every query binds its values; caller input (a caller ID, a typed name) never becomes SQL text. A number is looked
up by its key under the configured phone rules (crm_bridge.phones), so every written form of it finds the same
customers; how a file is read is crm_bridge.files. Creating and changing a customer is audited (who, from where,
every change from and to).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import and_, delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from callcenter.auth.audit import Auditor
from callcenter.db import Database, DatabaseUnavailable, utcnow
from crm_bridge.exceptions import CustomerNotFound, InvalidCrmInput
from crm_bridge.files import CUSTOMER_COLUMNS, CUSTOMERS, OWNERS_BY_KEY, OWNERS_MAX, read_files
from crm_bridge.infos import CustomerFile
from crm_bridge.models import TIER_RANK, Contact, Customer, CustomerPhone, Tier
from crm_bridge.phones import DEFAULT_RULES, PhoneRules
from crm_bridge.schemas import ContactIn, CustomerIn, CustomerPatch, PhoneIn
from crm_bridge.text import like_escape, name_key, prefix_end

# Numbers whose tier is remembered for a database outage, and the tiers loaded ahead (those the flows prioritise).
TIERS_REMEMBERED = 200_000
PRIORITY_TIERS: tuple[str, ...] = (Tier.VIP.value, Tier.GOLD.value)


class AuditAction:
    CUSTOMER_CREATED = "customer_created"
    CUSTOMER_UPDATED = "customer_updated"


# The fields of a customer a patch sets as they are (numbers and contacts are replaced as lists).
_SCALAR_FIELDS = (
    "name",
    "company",
    "tier",
    "address",
    "notes",
    "account_manager",
    "first_contact",
    "last_contact",
    "churn_risk",
    "region",
)


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def _contact_tuple(row: Contact | ContactIn) -> tuple[str, str | None, str | None, str | None]:
    return (row.name, row.role, row.phone, row.email)


async def owner_ids(session: AsyncSession, key: str, limit: int) -> list[int]:
    """Ids of customers owning the number key ``key`` (at most ``limit``), in ``session``."""
    rows = await session.scalars(
        select(CustomerPhone.customer_id)
        .where(CustomerPhone.normalized == key)
        .order_by(CustomerPhone.customer_id)
        .limit(limit)
    )
    return list(rows)


class Customers:
    def __init__(
        self,
        database: Database,
        *,
        rules: PhoneRules = DEFAULT_RULES,
        audit: Auditor | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._database = database
        self.rules = rules
        self._audit = audit
        self._clock = clock
        # The tiers of numbers looked up lately and of every number of a tier that raises a caller's priority:
        # what the IVR queues a caller with while the database is down (the last answer, not no answer).
        self._tiers: OrderedDict[str, str | None] = OrderedDict()

    def phone_key(self, raw: str) -> str | None:
        """The lookup key of a written number under the configured rules (None: not a phone number)."""
        return self.rules.normalize(raw)

    # -- finding files ----------------------------------------------------------------------------------

    async def files_by_number(self, number: str, *, limit: int = OWNERS_MAX) -> list[CustomerFile]:
        """The files of every customer owning ``number`` (best tier first); [] for an unknown or junk number."""
        key = self.phone_key(number)
        if key is None:
            return []
        async with self._database.session() as session:
            owners = await session.execute(OWNERS_BY_KEY, {"key": key, "limit": max(1, min(limit, OWNERS_MAX))})
            return await read_files(session, owners.all())

    async def files_by_name(self, name: str, *, match: str = "prefix", limit: int = 20) -> list[CustomerFile]:
        """Customers whose name starts with (``prefix``, indexed) or contains (``contains``, a scan) ``name``."""
        key = name_key(name)
        if not key:
            return []
        limit = max(1, min(limit, 50))
        if match == "prefix":
            end = prefix_end(key)
            condition = CUSTOMERS.c.name_key >= key
            if end is not None:
                condition = and_(condition, CUSTOMERS.c.name_key < end)
        else:
            condition = CUSTOMERS.c.name_key.like(f"%{like_escape(key)}%", escape="\\")
        async with self._database.session() as session:
            found = await session.execute(
                select(*CUSTOMER_COLUMNS).where(condition).order_by(CUSTOMERS.c.name_key, CUSTOMERS.c.id).limit(limit)
            )
            return await read_files(session, found.all())

    async def file(self, customer_id: int) -> CustomerFile:
        """One customer's file; CustomerNotFound for an unknown id."""
        async with self._database.session() as session:
            found = (await session.execute(select(*CUSTOMER_COLUMNS).where(CUSTOMERS.c.id == customer_id))).all()
            if not found:
                raise CustomerNotFound(customer_id)
            (file,) = await read_files(session, found)
            return file

    # -- what a number says about its owners ------------------------------------------------------------

    async def best_tier(self, number: str) -> str | None:
        """The best tier among the customers owning ``number`` (vip before gold...), or None.

        Asked of the database each time (a tier changed a minute ago counts); while the database is unavailable
        the answer is the one it gave last for the number (:meth:`remember_tiers` loads the priority tiers ahead),
        or None (the default priority) for a number it never gave one: a caller is queued either way."""
        key = self.phone_key(number)
        if key is None:
            return None
        try:
            async with self._database.session() as session:
                tiers = await session.scalars(
                    select(Customer.tier)
                    .join(CustomerPhone, CustomerPhone.customer_id == Customer.id)
                    .where(CustomerPhone.normalized == key)
                )
                known = [tier for tier in tiers if tier in TIER_RANK]
        except DatabaseUnavailable:
            return self._tiers.get(key)
        best = min(known, key=TIER_RANK.__getitem__) if known else None
        self._remember(key, best)
        return best

    def _remember(self, key: str, tier: str | None) -> None:
        self._tiers[key] = tier
        self._tiers.move_to_end(key)
        while len(self._tiers) > TIERS_REMEMBERED:
            self._tiers.popitem(last=False)

    async def remember_tiers(self, tiers: Sequence[str] = PRIORITY_TIERS) -> int:
        """Loads the numbers of every customer of ``tiers`` (the ones that raise a caller's priority) into the
        memory :meth:`best_tier` answers from while the database is down; returns how many numbers. Refreshed by
        the CRM's plugin every few minutes."""
        best: dict[str, str] = {}
        async with self._database.session() as session:
            rows = await session.execute(
                select(CustomerPhone.normalized, Customer.tier)
                .join(Customer, CustomerPhone.customer_id == Customer.id)
                .where(Customer.tier.in_(list(tiers)))
                .limit(TIERS_REMEMBERED)
            )
            for key, tier in rows:
                if key and (key not in best or TIER_RANK[tier] < TIER_RANK[best[key]]):
                    best[key] = tier
        for key, tier in best.items():
            self._remember(key, tier)
        return len(best)

    async def owners_of(self, number: str, *, limit: int = 2) -> list[int]:
        """Ids of customers owning ``number`` (at most ``limit``)."""
        key = self.phone_key(number)
        if key is None:
            return []
        async with self._database.session() as session:
            return await owner_ids(session, key, limit)

    # -- creating and changing --------------------------------------------------------------------------

    def _phone_keys(self, phones: Sequence[PhoneIn]) -> list[str]:
        keys: list[str] = []
        for index, phone in enumerate(phones):
            key = self.phone_key(phone.number)
            if key is None:
                raise InvalidCrmInput(f"phones.{index}.number", "not a phone number")
            if key in keys:
                raise InvalidCrmInput(f"phones.{index}.number", "the same number is listed twice")
            keys.append(key)
        return keys

    async def create(self, data: CustomerIn, *, actor: str | None = None, remote: str | None = None) -> CustomerFile:
        """A new customer file with its numbers and contacts; audited as customer_created."""
        keys = self._phone_keys(data.phones)
        now = self._clock()
        async with self._database.session() as session:
            customer = Customer(
                name=data.name,
                name_key=name_key(data.name),
                company=data.company,
                tier=str(data.tier),
                address=data.address,
                notes=data.notes,
                account_manager=data.account_manager,
                first_contact=data.first_contact,
                last_contact=data.last_contact,
                churn_risk=data.churn_risk,
                region=data.region,
                created_at=now,
                updated_at=now,
            )
            session.add(customer)
            await session.flush()
            self._add_phones(session, customer.id, data.phones, keys)
            self._add_contacts(session, customer.id, data.contacts)
            await session.flush()
            (created,) = await read_files(session, [customer])
        await self._write_audit(
            AuditAction.CUSTOMER_CREATED,
            actor,
            created.customer.id,
            remote,
            {
                "name": data.name,
                "tier": str(data.tier),
                "region": data.region,
                "phones": [phone.number for phone in data.phones],
            },
        )
        return created

    def _add_phones(self, session: AsyncSession, customer_id: int, phones: Sequence[PhoneIn], keys: list[str]) -> None:
        session.add_all(
            CustomerPhone(customer_id=customer_id, number=phone.number, normalized=key, kind=str(phone.kind))
            for phone, key in zip(phones, keys, strict=True)
        )

    def _add_contacts(self, session: AsyncSession, customer_id: int, contacts: Sequence[ContactIn]) -> None:
        session.add_all(
            Contact(customer_id=customer_id, name=c.name, role=c.role, phone=c.phone, email=c.email) for c in contacts
        )

    async def update(
        self, customer_id: int, patch: CustomerPatch, *, actor: str | None = None, remote: str | None = None
    ) -> CustomerFile:
        """Applies the fields sent; audited as customer_updated with every change (from, to) when any."""
        sent = patch.model_fields_set
        keys = self._phone_keys(patch.phones) if patch.phones is not None else []
        changes: dict[str, Any] = {}
        async with self._database.session() as session:
            customer = await session.get(Customer, customer_id)
            if customer is None:
                raise CustomerNotFound(customer_id)
            for name in _SCALAR_FIELDS:
                if name not in sent:
                    continue
                new = getattr(patch, name)
                new = str(new) if name == "tier" else new
                old = getattr(customer, name)
                if new != old:
                    changes[name] = {"from": _jsonable(old), "to": _jsonable(new)}
                    setattr(customer, name, new)
            if "name" in changes:
                customer.name_key = name_key(customer.name)
            if patch.phones is not None:
                current = list(
                    await session.scalars(
                        select(CustomerPhone).where(CustomerPhone.customer_id == customer_id).order_by(CustomerPhone.id)
                    )
                )
                before = [(phone.number, phone.kind) for phone in current]
                after = [(phone.number, str(phone.kind)) for phone in patch.phones]
                if before != after:
                    # A statement now, not at flush: the unit of work would insert the new rows before deleting
                    # the old ones and trip over the (customer, number) uniqueness.
                    await session.execute(delete(CustomerPhone).where(CustomerPhone.customer_id == customer_id))
                    self._add_phones(session, customer_id, patch.phones, keys)
                    changes["phones"] = {"from": [n for n, _ in before], "to": [n for n, _ in after]}
            if patch.contacts is not None:
                current_contacts = list(
                    await session.scalars(
                        select(Contact).where(Contact.customer_id == customer_id).order_by(Contact.id)
                    )
                )
                before_contacts = [_contact_tuple(c) for c in current_contacts]
                after_contacts = [_contact_tuple(c) for c in patch.contacts]
                if before_contacts != after_contacts:
                    await session.execute(delete(Contact).where(Contact.customer_id == customer_id))
                    self._add_contacts(session, customer_id, patch.contacts)
                    changes["contacts"] = {
                        "from": [c[0] for c in before_contacts],
                        "to": [c[0] for c in after_contacts],
                    }
            if changes:
                customer.updated_at = self._clock()
            await session.flush()
            session.expire_all()
            refreshed = await session.get(Customer, customer_id)
            (updated,) = await read_files(session, [cast(Customer, refreshed)])
        if changes:
            await self._write_audit(AuditAction.CUSTOMER_UPDATED, actor, customer_id, remote, {"changes": changes})
        return updated

    async def _write_audit(
        self, action: str, actor: str | None, customer_id: int, remote: str | None, details: dict[str, Any]
    ) -> None:
        if self._audit is None:
            return
        await self._audit.audit(action, actor=actor, target=f"customer:{customer_id}", remote=remote, details=details)
