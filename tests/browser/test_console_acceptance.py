"""The console's acceptance test, in headless Chromium (Debian's, driven by Playwright): a
merchant creates a campaign with rules and an affiliate, makes the affiliate's link;
simulated visitors click it and one of them buys (server to server, with the click id the
redirect handed the shop); the ingest job and the dbt build run (as Dagster would); the
commission appears in the review queue, the merchant approves it; the affiliate logs in
and gives a Pix key; after the next build the merchant prepares a payout batch, downloads
its Pix file and marks it paid; after the last build the ledger says the commission is
paid and the affiliate's console shows it.

Screenshots of every step go to test-artifacts/console/ (RASTRO_TEST_ARTIFACTS overrides).
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from api.auth import Users
from api.store import ConfigStore
from pipelines.simulate import ingest_and_build
from rastro.settings import Settings
from tests.api.conftest import running_api
from tests.browser.test_tag_browser import CHROMIUM, CHROMIUM_ARGS
from tests.conftest import migrated_database

pytestmark = pytest.mark.slow

ARTIFACTS = Path(
    os.environ.get("RASTRO_TEST_ARTIFACTS", Path(__file__).parents[2] / "test-artifacts")
)
SHOP = "loja-aceite.example.com.br"
ADMIN_EMAIL, ADMIN_PASSWORD = "gerente@loja-aceite.example", "senha-do-gerente-1"
AFFILIATE_EMAIL, AFFILIATE_PASSWORD = "ana@blog.example", "senha-da-ana-123"
ORDER_AMOUNT = "800.00"  # 10% of it is R$ 80,00: above the default minimum payout (R$ 50,00)
COMMISSION_MINOR = 8000
CPF = "529.982.247-25"  # a well-formed CPF (check digits valid), the Pix key


@pytest.fixture
def platform(warehouse_url: str, tmp_path: Path) -> Iterator[tuple[Settings, str, str]]:
    """A tenant with its store and its admin user, and the API as a real server process.
    Yields the settings, the API's base URL and an ingest key for the shop's backend."""
    with migrated_database(warehouse_url, "rastro_console") as database:
        settings = Settings(
            _env_file=None,
            clickhouse_url=warehouse_url,
            clickhouse_database=database,
            data_dir=tmp_path / "state",
            secret_key="console-acceptance-secret",
        )
        store = ConfigStore(settings)
        tenant, _ = store.create_tenant("Loja Aceite")
        scope = store.for_tenant(tenant.tenant_id)
        scope.create_merchant("Loja Aceite", [SHOP])
        Users(store).invite(scope, ADMIN_EMAIL, "Gerente", "admin", password=ADMIN_PASSWORD)
        ingest_key = scope.create_api_key("loja backend", ["ingest"])
        with running_api(settings) as (_, port):
            yield settings, f"http://127.0.0.1:{port}", ingest_key


def shot(page: Page, name: str) -> None:
    folder = ARTIFACTS / "console"
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def log_in(page: Page, base: str, email: str, password: str) -> None:
    page.goto(f"{base}/console/login")
    page.fill("[data-testid=login-email]", email)
    page.fill("[data-testid=login-password]", password)
    page.click("[data-testid=login-submit]")
    expect(page.locator("[data-testid=logout]")).to_be_visible()


def build(settings: Settings) -> None:
    result = ingest_and_build(settings)
    assert result.returncode == 0, result.output[-20_000:]


def test_merchant_campaign_to_paid_commission(platform: tuple[Settings, str, str]) -> None:
    settings, base, ingest_key = platform
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        merchant = browser.new_context(locale="pt-BR", viewport={"width": 1280, "height": 900})
        page = merchant.new_page()

        # The merchant logs in and creates a campaign with its commission rules.
        log_in(page, base, ADMIN_EMAIL, ADMIN_PASSWORD)
        shot(page, "01-dashboard")
        page.click("[data-testid=nav-campaigns]")
        page.click("[data-testid=new-campaign]")
        page.fill("[data-testid=campaign-name]", "Programa Aceite")
        page.fill("[data-testid=campaign-domains]", SHOP)
        page.fill("[data-testid=campaign-hold]", "30")
        # Two rules; the first that applies prices an order (rules do not stack): R$ 15,00 flat
        # on orders with the coupon ANA15 from Brazil, else 10% of the net. The order below
        # has no coupon, so the 10% rule prices it.
        page.fill("[data-testid=rule-0-id]", "cupom-ana")
        page.select_option("[data-testid=rule-0-type]", "flat")
        page.fill("[data-testid=rule-0-amount]", "15,00")
        page.click("[data-testid=rule-0-conditions]")
        page.fill("[data-testid=rule-0-coupon-codes]", "ANA15")
        page.fill("[data-testid=rule-0-countries]", "BR")
        page.click("[data-testid=add-rule]")
        page.fill("[data-testid=rule-1-id]", "base")
        page.select_option("[data-testid=rule-1-type]", "percent")
        page.fill("[data-testid=rule-1-rate]", "10")
        shot(page, "02-new-campaign")
        page.click("[data-testid=save-campaign]")
        expect(page.locator("[data-testid=campaign-title]")).to_have_text("Programa Aceite")
        rules = page.locator("[data-testid=rules-table]")
        expect(rules).to_contain_text("10%")
        expect(rules).to_contain_text("R$ 15,00")
        expect(rules).to_contain_text("ANA15")
        shot(page, "03-campaign")

        # An affiliate joins, with a console login of her own.
        page.click("[data-testid=nav-affiliates]")
        page.fill("[data-testid=add-name]", "Blog da Ana")
        page.click("[data-testid=add-submit]")
        row = page.locator("[data-testid=affiliate-row]", has_text="Blog da Ana")
        expect(row).to_be_visible()
        affiliate_id = row.get_attribute("data-affiliate-id")
        assert affiliate_id
        store = ConfigStore(settings)
        tenant_id = store.rows("SELECT tenant_id FROM tenants FINAL")[0]["tenant_id"]
        Users(store).invite(
            store.for_tenant(tenant_id),
            AFFILIATE_EMAIL,
            "Ana",
            "affiliate",
            affiliate_id=affiliate_id,
            password=AFFILIATE_PASSWORD,
        )
        shot(page, "04-affiliates")

        # The merchant makes her link.
        page.click("[data-testid=nav-links]")
        page.select_option("[data-testid=link-affiliate]", affiliate_id)
        page.select_option("[data-testid=link-campaign]", label="Programa Aceite")
        page.fill("[data-testid=link-destination]", f"https://{SHOP}/tenis")
        page.fill("[data-testid=link-sub1]", "instagram")
        page.click("[data-testid=create-link]")
        created = page.locator("[data-testid=link-row][data-created=true]")
        expect(created).to_be_visible()
        link_url = created.locator("[data-testid=link-url]").input_value()
        shot(page, "05-link")

        # Simulated traffic: visitors click the link; the redirect hands the shop a click id;
        # one of them buys, and the shop's backend posts the order with it.
        path = urlsplit(link_url).path
        click_ids = []
        with httpx2.Client(base_url=base) as http:
            for visitor in range(5):
                answer = http.get(
                    path,
                    headers={
                        "User-Agent": f"Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0 v{visitor}",
                        "X-Forwarded-For": f"203.0.113.{visitor + 1}",
                    },
                )
                assert answer.status_code == 302, answer.text
                location = urlsplit(answer.headers["location"])
                assert location.hostname == SHOP
                click_ids.append(parse_qs(location.query)["rclid"][0])
            order = http.post(
                "/v1/conversions",
                headers={"Authorization": f"Bearer {ingest_key}"},
                json={
                    "order_id": "ACEITE-1001",
                    "amount": ORDER_AMOUNT,
                    "currency": "BRL",
                    "click_id": click_ids[2],
                },
            )
            assert order.status_code in (200, 201, 202), order.text

        # Ingest and the dbt build, as Dagster runs them: the commission is computed.
        build(settings)

        page.click("[data-testid=nav-commissions]")
        commission = page.locator("[data-testid=commission-row]")
        expect(commission).to_have_count(1)
        expect(commission).to_contain_text("R$ 80,00")
        expect(commission).to_have_attribute("data-status", "pending")
        shot(page, "06-review-queue")
        commission.locator("[data-testid=select-commission]").check()
        page.select_option("[data-testid=decision]", "approve")
        page.fill("[data-testid=decision-reason]", "pedido entregue")
        page.click("[data-testid=decide]")
        expect(page.locator("[data-testid=flash]")).to_be_visible()
        expect(page.locator("[data-testid=commission-row]")).to_have_attribute(
            "data-status", "approved"
        )
        shot(page, "07-approved")

        # The affiliate logs in and gives her Pix key (payouts need one).
        affiliate = browser.new_context(locale="pt-BR", viewport={"width": 1280, "height": 900})
        her = affiliate.new_page()
        log_in(her, base, AFFILIATE_EMAIL, AFFILIATE_PASSWORD)
        her.click("[data-testid=nav-payout_details]")
        her.check("[data-testid=method-pix]")
        her.select_option("[data-testid=pix-key-type]", "cpf")
        her.fill("[data-testid=pix-key]", CPF)
        her.click("[data-testid=save-payout-details]")
        expect(her.locator("[data-testid=flash]")).to_be_visible()
        shot(her, "08-affiliate-pix")

        # The next build books the approval; the merchant prepares and pays the batch.
        build(settings)
        page.click("[data-testid=nav-payouts]")
        page.click("[data-testid=prepare-batch]")
        expect(page.locator("[data-testid=flash]")).to_be_visible()
        # Preparing opens the new batch.
        expect(page.locator("[data-testid=batch-rows]")).to_contain_text("R$ 80,00")
        shot(page, "09-batch")
        with page.expect_download() as download:
            page.click("[data-testid=export-pix-BRL]")
        pix_file = Path(download.value.path()).read_text(encoding="utf-8-sig")
        rows = list(csv.reader(io.StringIO(pix_file)))
        assert len(rows) == 2, pix_file  # the header and Ana's transfer
        assert any("80.00" in cell or "80,00" in cell for cell in rows[1]), rows
        assert any("52998224725" in cell.replace(".", "").replace("-", "") for cell in rows[1])
        page.fill("[data-testid=pay-reference]", "pix-lote-1")
        page.check("[data-testid=pay-confirm]")
        page.click("[data-testid=mark-paid]")
        expect(page.locator("[data-testid=flash]")).to_be_visible()
        shot(page, "10-paid")

        # The last build books the payment: the ledger and the affiliate's console agree.
        build(settings)
        scope = ConfigStore(settings).for_tenant(tenant_id)
        balances = scope.rows(
            "SELECT sum(paid_delta_minor) AS paid, sum(approved_delta_minor) AS approved, "
            "sum(pending_delta_minor) AS pending FROM fct_ledger_entries "
            "WHERE affiliate_id = {a:String}",
            a=affiliate_id,
        )[0]
        assert balances == {"paid": COMMISSION_MINOR, "approved": 0, "pending": 0}
        her.click("[data-testid=nav-affiliate_dashboard]")
        expect(her.locator("[data-testid=earnings-paid]")).to_contain_text("R$ 80,00")
        shot(her, "11-affiliate-paid")

        # Paying again pays nothing more.
        page.reload()
        if page.locator("[data-testid=mark-paid]").count():
            page.check("[data-testid=pay-confirm]")
            page.click("[data-testid=mark-paid]")
        build(settings)
        again = scope.rows(
            "SELECT sum(paid_delta_minor) AS paid FROM fct_ledger_entries "
            "WHERE affiliate_id = {a:String}",
            a=affiliate_id,
        )[0]
        assert again["paid"] == COMMISSION_MINOR
        browser.close()
