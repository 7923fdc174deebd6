"""Campaigns: the list, one campaign's terms and version history, the form that creates one
with its commission rules (percent or flat, with conditions, tiers and a cap) or writes new
terms (a new version), and pause, resume, archive, all through api/campaigns.py.

The form is read into the API's own request model (`campaigns.CampaignTerms`), so the
console and the API refuse exactly the same things; its errors are shown next to the
fields they concern.
Amounts are typed in the tenant's currency the way the user's language writes them
("1.234,56" in pt-BR) and percentages as percent ("12,5"); both are turned into the rules'
exact forms (minor units, a fraction as text) here.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, cast

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import Response
from pydantic import ValidationError

from api import campaigns
from api.affiliates import list_affiliates
from api.console.formatting import format_decimal, parse_money, parse_percent
from api.console.web import PREFIX, Admin, AdminPost, Page
from api.links import list_links

router = APIRouter()

MODELS = ("last_click", "first_click", "linear", "time_decay", "position_based", "data_driven")
CONSENT_POLICIES = ("opt_out", "opt_in", "none")
TIERS_PER_RULE = 3  # blank tier rows offered per rule; more tiers: save, then add again
MAX_RULES = 100

# The campaign's own fields, with what the form starts from (CampaignCreate's defaults).
_DEFAULTS = {
    "name": "",
    "status": "active",
    "destination_domains": "",
    "attribution_window_days": "30",
    "attribution_model": "last_click",
    "hold_days": "30",
    "click_id_param": "rclid",
    "landing_params": "via",
    "consent_policy": "opt_out",
}
_RULE_FIELDS = (
    "id",
    "type",
    "rate",
    "amount",
    "base",
    "category",
    "segment",
    "affiliate_id",
    "min_order",
    "new_customers_only",
    "recurring_months",
    "cap",
    "countries",
    "product_ids",
    "coupon_codes",
)
# Conditions written as lists, typed as words separated by spaces or commas.
_LIST_CONDITIONS = ("countries", "product_ids", "coupon_codes")


def blank_rule(index: int) -> dict[str, Any]:
    rule: dict[str, Any] = {field: "" for field in _RULE_FIELDS}
    rule.update(id=f"rule-{index + 1}", type="percent", base="net", recurring_months="0")
    rule["tiers"] = [{"min": "", "rate": ""} for _ in range(TIERS_PER_RULE)]
    return rule


def _read_form(form: Any) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """The raw form as typed: the campaign's fields and each rule's (by index)."""
    values = {name: str(form.get(name, default)).strip() for name, default in _DEFAULTS.items()}
    count = min(int(form.get("rule_count", "0") or 0), MAX_RULES)
    rules = []
    for i in range(count):
        rule: dict[str, Any] = {
            field: str(form.get(f"rule-{i}-{field}", "")).strip() for field in _RULE_FIELDS
        }
        rule["tiers"] = [
            {
                "min": str(form.get(f"rule-{i}-tier-{j}-min", "")).strip(),
                "rate": str(form.get(f"rule-{i}-tier-{j}-rate", "")).strip(),
            }
            for j in range(TIERS_PER_RULE)
        ]
        rules.append(rule)
    return values, rules


def _split(text: str) -> list[str]:
    return [part for part in text.replace(",", " ").split() if part]


def _to_request(
    current: Page, values: dict[str, str], rules: list[dict[str, Any]]
) -> tuple[dict[str, Any], dict[str, str]]:
    """The API request body the form means, and the errors of what could not be read (by
    form field name, as catalog keys)."""
    errors: dict[str, str] = {}
    body: dict[str, Any] = {
        "name": values["name"],
        "status": "",
        "destination_domains": _split(values["destination_domains"]),
        "attribution_model": values["attribution_model"],
        "click_id_param": values["click_id_param"],
        "landing_params": _split(values["landing_params"]),
        "consent_policy": values["consent_policy"],
    }
    for name in ("attribution_window_days", "hold_days"):
        if values[name].isdigit():
            body[name] = int(values[name])
        else:
            errors[name] = "form.whole_number"
    body["commission_rules"] = []
    body.pop("status")
    for i, rule in enumerate(rules):
        out: dict[str, Any] = {"id": rule["id"], "type": rule["type"], "base": rule["base"]}
        if rule["type"] == "percent":
            try:
                out["rate"] = parse_percent(rule["rate"])
            except ValueError:
                errors[f"rule-{i}-rate"] = "form.percent"
        else:
            try:
                out["amount_minor"] = parse_money(rule["amount"], current.currency, current.locale)
            except ValueError:
                errors[f"rule-{i}-amount"] = "form.money"
        for name in ("category", "segment", "affiliate_id"):
            if rule[name]:
                out[name] = rule[name]
        for name in _LIST_CONDITIONS:
            if rule[name]:
                words = _split(rule[name])
                out[name] = [w.upper() for w in words] if name == "countries" else words
        for name, target in (("min_order", "min_order_minor"), ("cap", "cap_minor")):
            if rule[name]:
                try:
                    out[target] = parse_money(rule[name], current.currency, current.locale)
                except ValueError:
                    errors[f"rule-{i}-{name}"] = "form.money"
        if rule["new_customers_only"]:
            out["new_customers_only"] = True
        if rule["recurring_months"] not in ("", "0"):
            if rule["recurring_months"].isdigit():
                out["recurring_months"] = int(rule["recurring_months"])
            else:
                errors[f"rule-{i}-recurring_months"] = "form.whole_number"
        tiers = []
        for j, tier in enumerate(rule["tiers"]):
            if not tier["min"] and not tier["rate"]:
                continue
            try:
                tiers.append(
                    {
                        "min_monthly_conversions": int(tier["min"]),
                        "rate": parse_percent(tier["rate"]),
                    }
                )
            except ValueError:
                errors[f"rule-{i}-tier-{j}"] = "form.tier"
        if tiers:
            out["tiers"] = tiers
        body["commission_rules"].append(out)
    return body, errors


def _field_name(location: tuple[Any, ...]) -> str:
    """The form field a validation error of CampaignCreate is about."""
    if location[:1] == ("commission_rules",) and len(location) >= 2:
        index, rest = location[1], location[2:]
        names = {
            "amount_minor": "amount",
            "min_order_minor": "min_order",
            "cap_minor": "cap",
        }
        if rest[:1] == ("tiers",):
            return f"rule-{index}-tier-{rest[1] if len(rest) > 1 else 0}"
        return f"rule-{index}-{names.get(str(rest[0]), rest[0])}" if rest else f"rule-{index}"
    return str(location[0]) if location else "form"


def _form_page(
    current: Page,
    values: dict[str, str],
    rules: list[dict[str, Any]],
    errors: dict[str, str] | None = None,
    problems: dict[str, str] | None = None,
    status_code: int = 200,
    action: str = f"{PREFIX}/campaigns/new",
    editing: campaigns.Campaign | None = None,
) -> Response:
    return current.render(
        "campaign_form.html",
        status_code=status_code,
        values=values,
        rules=rules,
        errors=errors or {},
        problems=problems or {},
        models=MODELS,
        consent_policies=CONSENT_POLICIES,
        affiliates=list_affiliates(current.scope, limit=1000),
        tiers_per_rule=TIERS_PER_RULE,
        action=action,
        editing=editing,
    )


@router.get("/campaigns")
def campaign_list(current: Admin) -> Response:
    return current.render("campaigns.html", campaigns=campaigns.in_force(current.scope))


@router.get("/campaigns/new")
def new_campaign(current: Admin) -> Response:
    return _form_page(current, dict(_DEFAULTS), [blank_rule(0)])


async def _submitted(
    current: Page, request: Request, action_url: str, editing: campaigns.Campaign | None
) -> tuple[campaigns.CampaignTerms | None, str, Response | None]:
    """The terms the form means and its status; or the form again (a rule added or removed,
    or errors shown next to their fields)."""
    form = await request.form()
    values, rules = _read_form(form)
    action = str(form.get("action", "save"))
    # "Add a rule" and "remove" re-render the form as typed: no JavaScript needed.
    if action == "add_rule" and len(rules) < MAX_RULES:
        return (
            None,
            "",
            _form_page(
                current,
                values,
                [*rules, blank_rule(len(rules))],
                action=action_url,
                editing=editing,
            ),
        )
    if action.startswith("remove_rule:"):
        index = int(action.partition(":")[2] or -1)
        kept = [r for i, r in enumerate(rules) if i != index]
        return None, "", _form_page(current, values, kept, action=action_url, editing=editing)
    body, errors = _to_request(current, values, rules)
    if errors:
        return (
            None,
            "",
            _form_page(
                current,
                values,
                rules,
                errors=errors,
                status_code=422,
                action=action_url,
                editing=editing,
            ),
        )
    try:
        terms = campaigns.CampaignTerms.model_validate(body)
        campaigns.check_references(current.scope, terms)
    except ValidationError as invalid:
        problems: dict[str, str] = {}
        for problem in invalid.errors():
            problems.setdefault(_field_name(tuple(problem["loc"])), problem["msg"])
        page = _form_page(
            current,
            values,
            rules,
            problems=problems,
            status_code=422,
            action=action_url,
            editing=editing,
        )
        return None, "", page
    except HTTPException as refused:  # a rule naming an unknown affiliate or segment
        page = _form_page(
            current,
            values,
            rules,
            problems={"form": str(refused.detail)},
            status_code=422,
            action=action_url,
            editing=editing,
        )
        return None, "", page
    return terms, values["status"], None


@router.post("/campaigns/new")
async def create_campaign(current: AdminPost, request: Request) -> Response:
    terms, campaign_status, again = await _submitted(
        current, request, f"{PREFIX}/campaigns/new", None
    )
    if terms is None:
        assert again is not None
        return again
    created = campaigns.create(
        current.state,
        current.scope,
        current.user,
        terms,
        "paused" if campaign_status == "paused" else "active",
    )
    return current.redirect(
        f"{PREFIX}/campaigns/{created.campaign_id}", flash="campaign_created", name=created.name
    )


@router.get("/campaigns/{campaign_id}")
def campaign_detail(current: Admin, campaign_id: str) -> Response:
    found = campaigns.detail(current.scope, campaign_id)  # 404 if not the tenant's
    affiliates = {a.id: a.display_name for a in list_affiliates(current.scope, limit=1000)}
    campaign_links = [
        link for link in list_links(current.scope, limit=1000) if link.campaign_id == campaign_id
    ]
    return current.render(
        "campaign.html", campaign=found, affiliates=affiliates, links=campaign_links
    )


def _as_form(
    current: Page, campaign: campaigns.Campaign
) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """The form's raw values for terms in force: what "edit" starts from."""
    exponent = current.currency

    def money(minor: int | None) -> str:
        if minor is None:
            return ""
        from rastro.money import CURRENCY_EXPONENTS

        places = CURRENCY_EXPONENTS[exponent]
        return format_decimal(Decimal(minor).scaleb(-places), current.locale, places)

    def percent(rate: str | None) -> str:
        return format_decimal((Decimal(rate) * 100).normalize(), current.locale) if rate else ""

    values = {
        "name": campaign.name,
        "status": campaign.status,
        "destination_domains": " ".join(campaign.destination_domains),
        "attribution_window_days": str(campaign.attribution_window_days),
        "attribution_model": campaign.attribution_model,
        "hold_days": str(campaign.hold_days),
        "click_id_param": campaign.click_id_param,
        "landing_params": " ".join(campaign.landing_params),
        "consent_policy": campaign.consent_policy,
    }
    rules = []
    for i, written in enumerate(campaign.commission_rules):
        rule = blank_rule(i)
        rule.update(
            id=written.get("id", ""),
            type=written.get("type", "percent"),
            base=written.get("base", "net"),
            rate=percent(written.get("rate")),
            amount=money(written.get("amount_minor")),
            cap=money(written.get("cap_minor")),
            min_order=money(written.get("min_order_minor")),
            category=written.get("category") or "",
            segment=written.get("segment") or "",
            affiliate_id=written.get("affiliate_id") or "",
            new_customers_only="1" if written.get("new_customers_only") else "",
            recurring_months=str(written.get("recurring_months", 0)),
            **{name: " ".join(written.get(name) or []) for name in _LIST_CONDITIONS},
        )
        for j, tier in enumerate(written.get("tiers", [])[:TIERS_PER_RULE]):
            rule["tiers"][j] = {
                "min": str(tier["min_monthly_conversions"]),
                "rate": percent(tier["rate"]),
            }
        rules.append(rule)
    return values, rules


@router.get("/campaigns/{campaign_id}/edit")
def edit_campaign(current: Admin, campaign_id: str) -> Response:
    found = campaigns.current(current.scope, campaign_id)
    values, rules = _as_form(current, found)
    return _form_page(
        current, values, rules, action=f"{PREFIX}/campaigns/{campaign_id}/edit", editing=found
    )


@router.post("/campaigns/{campaign_id}/edit")
async def revise_campaign(current: AdminPost, request: Request, campaign_id: str) -> Response:
    """Saving an edit writes a new terms version from now: conversions already priced keep
    the terms they were priced with."""
    found = campaigns.current(current.scope, campaign_id)
    terms, _, again = await _submitted(
        current, request, f"{PREFIX}/campaigns/{campaign_id}/edit", found
    )
    if terms is None:
        assert again is not None
        return again
    try:
        revised = campaigns.revise(current.state, current.scope, current.user, campaign_id, terms)
    except HTTPException as refused:
        if refused.status_code != 409:
            raise
        return current.redirect(f"{PREFIX}/campaigns/{campaign_id}", flash="campaign_conflict")
    return current.redirect(
        f"{PREFIX}/campaigns/{campaign_id}",
        flash="campaign_revised",
        version=revised.terms_version,
    )


@router.post("/campaigns/{campaign_id}/status")
def change_status(
    current: AdminPost,
    campaign_id: str,
    action: Annotated[str, Form()] = "",
    reason: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    if action not in ("pause", "resume", "archive"):
        raise HTTPException(422)
    chosen = cast(campaigns.StatusAction, action)  # checked just above
    try:
        changed = campaigns.change_status(
            current.state, current.scope, current.user, campaign_id, chosen, reason
        )
    except HTTPException as refused:
        if refused.status_code != 409:
            raise
        return current.redirect(f"{PREFIX}/campaigns/{campaign_id}", flash="campaign_conflict")
    return current.redirect(
        f"{PREFIX}/campaigns/{campaign_id}",
        flash="campaign_status",
        status=current.t.label("status", changed.status),
    )
