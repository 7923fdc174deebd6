-- Each commission is its rules' amounts summed, times the share, rounded half to even; never
-- negative, never more than the rules' total.
select
    commission_id,
    gross_amount,
    arraySum(rule_amounts) as rules_total,
    share,
    commission_minor
from {{ ref('fct_commissions') }}
where gross_amount != arraySum(rule_amounts)
    or commission_minor != toInt64(roundBankers(toDecimal256(gross_amount, 9) * toDecimal256(toString(share), 18), 0))
    or commission_minor < 0
    or commission_minor > ceil(gross_amount)
    or length(rule_ids) != length(rule_amounts)
