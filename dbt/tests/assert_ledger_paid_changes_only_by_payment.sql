-- Paid is money that left: only a payment entry moves it. Nothing after a payment (a
-- reversal, a rejection, a correction) changes what was paid; it makes approved negative.
select entry_id, commission_id, entry_type, paid_delta_minor
from {{ ref('fct_ledger_entries') }}
where paid_delta_minor != 0 and entry_type != 'payment'
