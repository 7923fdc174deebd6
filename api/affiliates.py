"""Affiliates of a tenant's program: onboarding (directly or by invitation), review
(approve, reject, suspend, reactivate), segments, and payout details encrypted at rest.

Personal data is never stored in clear. The email is kept as `email_hash` (the keyed hash the
edge gives customers' emails, so the self-referral check is a join) and inside
`contact_ciphertext`; payout details only inside `payout_details_ciphertext`, next to
`payout_fingerprint`, a keyed hash of the normalized account that lets the fraud rule
shared_payout_details find accounts shared by affiliates without decrypting anything. Each
ciphertext is bound to its tenant, affiliate and column (AES-GCM associated data), and both
are re-sealed under the vault's current key whenever either is written, so
`encryption_key_id` always names the key of both.

Every change is recorded in the audit log here, not in the routes, so that the API and the
console audit alike. Functions return None for an affiliate the scope cannot see (another
tenant's, or for an affiliate scope any other affiliate): the API answers 404 for both.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationInfo, field_validator

from api import audit
from api.auth import EmailAddress, Locale, StateConflict, User, next_write_time
from api.state import EdgeState
from api.store import Principal, TenantScope, UtcDatetime
from rastro.crypto import Vault
from rastro.ids import uuid7

AffiliateStatus = Literal["invited", "pending", "approved", "rejected", "suspended"]
Transition = Literal["approve", "reject", "suspend", "reactivate"]

# action -> (the statuses it may start from, the status it leads to). A rejected applicant
# may be reconsidered (approve); a suspended affiliate comes back with reactivate.
TRANSITIONS: dict[Transition, tuple[frozenset[str], AffiliateStatus]] = {
    "approve": (frozenset({"invited", "pending", "rejected"}), "approved"),
    "reject": (frozenset({"invited", "pending"}), "rejected"),
    "suspend": (frozenset({"approved"}), "suspended"),
    "reactivate": (frozenset({"suspended"}), "approved"),
}
# Decisions against an affiliate must say why: the affiliate may ask, and the audit log keeps it.
REASON_REQUIRED: frozenset[Transition] = frozenset({"reject", "suspend"})

_SEALED = ("contact_ciphertext", "payout_details_ciphertext")


class Affiliate(BaseModel):
    id: str
    display_name: str
    status: AffiliateStatus
    segment: str = Field(description="The affiliate's group; commission rules may target it")
    country: str = Field(description="ISO 3166-1 alpha-2; empty if unknown")
    payout_method: str = Field(description="pix | bank_transfer | paypal; empty: not set yet")
    created_at: UtcDatetime
    updated_at: UtcDatetime


_COLUMNS = "id, display_name, status, segment, country, payout_method, created_at, updated_at"


# -- payout details: typed per method, validated and normalized -------------------------------

_PUNCTUATION = re.compile(r"[\s./-]")


def valid_cpf(digits: str) -> bool:
    """A CPF: 11 digits whose last two are its check digits (mod 11); not all one digit."""
    if not re.fullmatch(r"\d{11}", digits) or len(set(digits)) == 1:
        return False
    for length in (9, 10):
        total = sum(int(d) * (length + 1 - i) for i, d in enumerate(digits[:length]))
        if (total * 10) % 11 % 10 != int(digits[length]):
            return False
    return True


def valid_cnpj(value: str) -> bool:
    """A CNPJ: 12 characters and 2 check digits (mod 11, weights 2..9 from the right). The
    first 12 may be letters (the alphanumeric CNPJ, from July 2026): a character counts as its
    ASCII code minus 48, which for digits is the digit."""
    if not re.fullmatch(r"[0-9A-Z]{12}\d{2}", value) or len(set(value)) == 1:
        return False
    for length in (12, 13):
        weights = [2 + i % 8 for i in range(length)][::-1]
        total = sum((ord(c) - 48) * w for c, w in zip(value[:length], weights, strict=True))
        remainder = total % 11
        if (0 if remainder < 2 else 11 - remainder) != int(value[length]):
            return False
    return True


def _cpf(value: str) -> str:
    digits = _PUNCTUATION.sub("", value)
    if not valid_cpf(digits):
        raise ValueError("is not a valid CPF (11 digits, check digits included)")
    return digits


def _cnpj(value: str) -> str:
    normalized = _PUNCTUATION.sub("", value).upper()
    if not valid_cnpj(normalized):
        raise ValueError("is not a valid CNPJ (14 characters, check digits included)")
    return normalized


def _tax_id(value: str) -> str:
    normalized = _PUNCTUATION.sub("", value).upper()
    if len(normalized) == 11:
        return _cpf(normalized)
    if len(normalized) == 14:
        return _cnpj(normalized)
    raise ValueError("is neither a CPF (11 digits) nor a CNPJ (14 characters)")


def _phone(value: str) -> str:
    normalized = re.sub(r"[\s().-]", "", value)
    if not re.fullmatch(r"\+[1-9]\d{7,14}", normalized):
        raise ValueError("is not a phone number in E.164 form (+5511987654321)")
    return normalized


def _email(value: str) -> str:
    email: str = TypeAdapter(EmailAddress).validate_python(value)
    return email


def _random_key(value: str) -> str:
    try:
        return str(uuid.UUID(value.strip()))
    except ValueError:
        raise ValueError("is not a random Pix key (a UUID)") from None


_PIX_KEYS = {"cpf": _cpf, "cnpj": _cnpj, "email": _email, "phone": _phone, "random": _random_key}


def _mask(value: str, keep: int = 4) -> str:
    """All but the last `keep` characters hidden (at most half shown for short values)."""
    shown = min(keep, len(value) // 2)
    return "*" * (len(value) - shown) + value[len(value) - shown :]


def _mask_email(email: str) -> str:
    name, _, domain = email.partition("@")
    return f"{name[:1]}***@{domain}"


class _Details(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def normalized_account(self) -> str:
        """The account money goes to, normalized: what payout_fingerprint hashes."""
        raise NotImplementedError

    def masked(self) -> dict[str, str]:
        """The details with account numbers hidden: enough to recognize them."""
        raise NotImplementedError

    def revealed(self) -> dict[str, str]:
        return {k: str(v) for k, v in self.model_dump().items() if k != "method"}


class PixDetails(_Details):
    """A Pix key (Brazil's instant payments), checked for its type: CPF and CNPJ by their
    check digits, a phone in E.164, an email, or a random key (a UUID)."""

    method: Literal["pix"]
    key_type: Literal["cpf", "cnpj", "email", "phone", "random"]
    key: str = Field(min_length=1, max_length=100, examples=["123.456.789-09"])

    @field_validator("key")
    @classmethod
    def _key_of_its_type(cls, key: str, info: ValidationInfo) -> str:
        # key_type is validated first (declared first); if it failed, that error is reported.
        key_type = info.data.get("key_type")
        return _PIX_KEYS[key_type](key) if key_type in _PIX_KEYS else key

    def normalized_account(self) -> str:
        return f"pix:{self.key_type}:{self.key}"

    def masked(self) -> dict[str, str]:
        key = _mask_email(self.key) if self.key_type == "email" else _mask(self.key)
        return {"key_type": self.key_type, "key": key}


def _account_number(value: str) -> str:
    # "0001" and "1", "12345-6" and "123456" are the same account to a bank.
    return value.replace("-", "").lstrip("0") or "0"


class BankTransferDetails(_Details):
    """A Brazilian bank account (TED/Pix by account): the bank by its COMPE code, branch and
    account as printed (check digit after a hyphen), and the holder, whose CPF or CNPJ is
    checked."""

    method: Literal["bank_transfer"]
    bank_code: str = Field(pattern=r"^\d{3}$", description="COMPE code", examples=["341"])
    branch: str = Field(pattern=r"^\d{1,5}(-[0-9Xx])?$", examples=["0001"])
    account: str = Field(pattern=r"^\d{1,20}(-[0-9Xx])?$", examples=["12345-6"])
    account_type: Literal["checking", "savings", "payment"]
    holder_name: str = Field(min_length=1, max_length=200)
    holder_tax_id: str = Field(
        max_length=20, description="The holder's CPF or CNPJ", examples=["11.222.333/0001-81"]
    )

    @field_validator("branch", "account")
    @classmethod
    def _upper_check_digit(cls, value: str) -> str:
        return value.upper()

    @field_validator("holder_tax_id")
    @classmethod
    def _holder_tax_id(cls, value: str) -> str:
        return _tax_id(value)

    def normalized_account(self) -> str:
        branch, account = _account_number(self.branch), _account_number(self.account)
        return f"bank_transfer:{self.bank_code}:{branch}:{account}"

    def masked(self) -> dict[str, str]:
        return {
            "bank_code": self.bank_code,
            "branch": self.branch,
            "account": _mask(self.account),
            "account_type": self.account_type,
            "holder_name": self.holder_name,
            "holder_tax_id": _mask(self.holder_tax_id),
        }


class PaypalDetails(_Details):
    method: Literal["paypal"]
    email: EmailAddress

    def normalized_account(self) -> str:
        return f"paypal:{self.email}"

    def masked(self) -> dict[str, str]:
        return {"email": _mask_email(self.email)}


# What an affiliate is paid into; `method` says which. A new method is a new model here.
PayoutDetails = Annotated[
    PixDetails | BankTransferDetails | PaypalDetails, Field(discriminator="method")
]
_PAYOUT_DETAILS: TypeAdapter[PayoutDetails] = TypeAdapter(PayoutDetails)


class PayoutDetailsView(BaseModel):
    """Payout details as shown: masked unless revealed (a reveal is audited)."""

    affiliate_id: str
    method: Literal["pix", "bank_transfer", "paypal"]
    masked: bool = Field(description="True: account numbers are hidden; ask with reveal=true")
    details: dict[str, str] = Field(description="The method's fields (see PUT's body)")
    updated_at: UtcDatetime


# -- reading ----------------------------------------------------------------------------------


def _associated(scope: TenantScope, affiliate_id: str, column: str) -> str:
    # Binds a ciphertext to its row and column: copied elsewhere, it does not decrypt.
    return f"affiliates:{scope.tenant_id}:{affiliate_id}:{column}"


def _row(scope: TenantScope, affiliate_id: str) -> dict[str, Any] | None:
    """The stored row (all columns but tenant_id and version), or None."""
    rows = scope.rows(
        "SELECT * EXCEPT (tenant_id, version) FROM affiliates FINAL WHERE id = {id:String}",
        id=affiliate_id,
    )
    return rows[0] if rows else None


def _open(vault: Vault, scope: TenantScope, row: dict[str, Any], column: str) -> str:
    if not row[column]:
        return ""
    return vault.decrypt(
        row["encryption_key_id"], row[column], _associated(scope, row["id"], column)
    )


def payout_details(scope: TenantScope, vault: Vault, affiliate_id: str) -> PayoutDetails | None:
    """The affiliate's payout details, decrypted and typed; None if none are set or the scope
    has no such affiliate. Raises rastro.crypto.DecryptionError if the ciphertext does not
    decrypt (a key missing from RASTRO_ENCRYPTION_KEYS, or tampered data)."""
    row = _row(scope, affiliate_id)
    if row is None or not row["payout_details_ciphertext"]:
        return None
    return _PAYOUT_DETAILS.validate_json(_open(vault, scope, row, "payout_details_ciphertext"))


def affiliate(scope: TenantScope, affiliate_id: str) -> Affiliate | None:
    rows = scope.rows(
        f"SELECT {_COLUMNS} FROM affiliates FINAL WHERE id = {{id:String}}", id=affiliate_id
    )
    return Affiliate(**rows[0]) if rows else None


def list_affiliates(
    scope: TenantScope,
    status: str | None = None,
    segment: str | None = None,
    limit: int = 100,
    after: str = "",
) -> list[Affiliate]:
    """Affiliates by id (creation order), `limit` after the id `after`."""
    rows = scope.rows(
        f"SELECT {_COLUMNS} FROM affiliates FINAL "
        "WHERE ({any_status:Bool} OR status = {status:String}) "
        "AND ({any_segment:Bool} OR segment = {segment:String}) "
        "AND id > {after:String} ORDER BY id LIMIT {limit:UInt32}",
        any_status=status is None,
        status=status or "",
        any_segment=segment is None,
        segment=segment or "",
        after=after,
        limit=limit,
    )
    return [Affiliate(**row) for row in rows]


def payout_details_view(
    scope: TenantScope, state: EdgeState, actor: Principal, affiliate_id: str, reveal: bool
) -> PayoutDetailsView | None:
    """The payout details as shown to `actor`: masked, or in full with `reveal` (audited:
    who saw an account number, and when, is itself worth knowing)."""
    row = _row(scope, affiliate_id)
    if row is None:
        return None
    if not row["payout_details_ciphertext"]:
        return None
    details = _PAYOUT_DETAILS.validate_json(
        _open(state.vault, scope, row, "payout_details_ciphertext")
    )
    if reveal:
        audit.record(
            scope, actor, "affiliate.reveal_payout_details", "affiliate", affiliate_id,
            details={"method": details.method},
        )  # fmt: skip
    return PayoutDetailsView(
        affiliate_id=affiliate_id,
        method=details.method,
        masked=not reveal,
        details=details.revealed() if reveal else details.masked(),
        updated_at=row["updated_at"],
    )


# -- writing ----------------------------------------------------------------------------------


def _seal(vault: Vault, scope: TenantScope, row: dict[str, Any], **plaintexts: str) -> None:
    """Sets both ciphertext columns of `row` under the vault's current key: the plaintexts
    given, the other column as it was (decrypted with its old key, so writing re-keys)."""
    values = {
        column: plaintexts[column] if column in plaintexts else _open(vault, scope, row, column)
        for column in _SEALED
    }
    for column, plaintext in values.items():
        row[column] = (
            vault.encrypt(plaintext, _associated(scope, row["id"], column))[1] if plaintext else ""
        )
    row["encryption_key_id"] = vault.current_key_id if any(values.values()) else ""


def _write(scope: TenantScope, row: dict[str, Any]) -> Affiliate:
    """Writes `row` (as `_row` returned it, changed) as the affiliate's new version."""
    at = next_write_time(row.pop("updated_at"))
    scope.write_version("affiliates", row, at)
    return Affiliate(**{**row, "updated_at": at})


def create_affiliate(
    scope: TenantScope,
    state: EdgeState,
    actor: Principal,
    display_name: str,
    segment: str = "",
    country: str = "",
    email: str | None = None,
    status: AffiliateStatus = "approved",
) -> Affiliate:
    """A new affiliate, approved unless `status` says otherwise (an invitation). The email,
    if given, is stored only as its keyed hash and encrypted in the contact details."""
    now = datetime.now(UTC)
    row: dict[str, Any] = {
        "id": uuid7(),
        "display_name": display_name,
        "status": status,
        "segment": segment,
        "country": country,
        "email_hash": "",
        "contact_ciphertext": "",
        "payout_method": "",
        "payout_details_ciphertext": "",
        "payout_fingerprint": "",
        "encryption_key_id": "",
        "created_at": now,
        "updated_at": now,
    }
    if email is not None:
        # The same hash as a customer's email on an order: self-referral is then a join.
        sha = hashlib.sha256(email.strip().lower().encode()).hexdigest()
        row["email_hash"] = state.pseudonym(scope.tenant_id, "email", sha)
        _seal(state.vault, scope, row, contact_ciphertext=json.dumps({"email": email}))
    created = _write(scope, row)
    # The email stays out of the audit log: it is append-only, personal data there never goes.
    audit.record(
        scope, actor, "affiliate.create", "affiliate", created.id,
        details={"display_name": display_name, "segment": segment, "country": country,
                 "status": status, "email_given": email is not None},
    )  # fmt: skip
    return created


def invite_affiliate(
    scope: TenantScope,
    state: EdgeState,
    actor: Principal,
    email: str,
    display_name: str,
    segment: str = "",
    country: str = "",
    locale: Locale = "pt-BR",
) -> tuple[Affiliate, User, str]:
    """An invited affiliate and its console user, and the user's one-time invitation token.
    Raises StateConflict if the email already has a user (in any tenant: it is the login)."""
    if state.users.email_taken(email):
        raise StateConflict("a user with this email already exists")
    created = create_affiliate(
        scope, state, actor, display_name, segment, country, email=email, status="invited"
    )
    user, token = state.users.invite(
        scope, email, display_name, "affiliate", affiliate_id=created.id, locale=locale
    )
    audit.record(
        scope, actor, "affiliate.invite", "affiliate", created.id,
        details={"user_id": user.id, "locale": locale},
    )  # fmt: skip
    return created, user, token


def update_affiliate(
    scope: TenantScope, actor: Principal, affiliate_id: str, changes: dict[str, str]
) -> Affiliate | None:
    """Changes display_name, segment or country; the audit entry has each [old, new]."""
    row = _row(scope, affiliate_id)
    if row is None:
        return None
    unknown = set(changes) - {"display_name", "segment", "country"}
    if unknown:
        raise ValueError(f"not changeable here: {', '.join(sorted(unknown))}")
    changed = {k: [row[k], v] for k, v in changes.items() if row[k] != v}
    if not changed:
        return Affiliate(**{k: row[k] for k in Affiliate.model_fields})
    row.update(changes)
    updated = _write(scope, row)
    audit.record(scope, actor, "affiliate.update", "affiliate", affiliate_id, details=changed)
    return updated


def transition(
    scope: TenantScope, actor: Principal, affiliate_id: str, action: Transition, reason: str = ""
) -> Affiliate | None:
    """Approves, rejects, suspends or reactivates an affiliate. Raises StateConflict if its
    status does not allow `action`, ValueError if `action` needs a reason and has none."""
    if action in REASON_REQUIRED and not reason.strip():
        raise ValueError(f"{action} needs a reason")
    row = _row(scope, affiliate_id)
    if row is None:
        return None
    sources, target = TRANSITIONS[action]
    if row["status"] not in sources:
        raise StateConflict(
            f"cannot {action} an affiliate that is {row['status']} "
            f"(only one that is {' or '.join(sorted(sources))})"
        )
    previous = row["status"]
    row["status"] = target
    updated = _write(scope, row)
    audit.record(
        scope, actor, f"affiliate.{action}", "affiliate", affiliate_id, reason.strip(),
        details={"from": previous, "to": target},
    )  # fmt: skip
    return updated


def set_payout_details(
    scope: TenantScope,
    state: EdgeState,
    actor: Principal,
    affiliate_id: str,
    details: PayoutDetails,
) -> PayoutDetailsView | None:
    """Stores the affiliate's payout details (encrypted), its method and fingerprint."""
    row = _row(scope, affiliate_id)
    if row is None:
        return None
    fingerprint = state.pseudonym(scope.tenant_id, "payout", details.normalized_account())
    _seal(state.vault, scope, row, payout_details_ciphertext=details.model_dump_json())
    row.update(payout_method=details.method, payout_fingerprint=fingerprint)
    updated = _write(scope, row)
    audit.record(
        scope, actor, "affiliate.set_payout_details", "affiliate", affiliate_id,
        details={"method": details.method, "fingerprint": fingerprint[:12]},
    )  # fmt: skip
    return PayoutDetailsView(
        affiliate_id=affiliate_id,
        method=details.method,
        masked=True,
        details=details.masked(),
        updated_at=updated.updated_at,
    )


def reseal(scope: TenantScope, vault: Vault) -> int:
    """Re-encrypts every affiliate of the scope not yet under the vault's current key (after
    a new key was put first in RASTRO_ENCRYPTION_KEYS), so the old key can then be dropped.
    Returns how many were re-encrypted. Not audited: nothing anyone sees changes."""
    stale = scope.rows(
        "SELECT id FROM affiliates FINAL "
        "WHERE encryption_key_id != '' AND encryption_key_id != {current:String}",
        current=vault.current_key_id,
    )
    for entry in stale:
        row = _row(scope, entry["id"])
        if row is not None:
            _seal(vault, scope, row)
            _write(scope, row)
    return len(stale)
