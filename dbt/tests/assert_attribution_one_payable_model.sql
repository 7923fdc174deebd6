-- Every credited conversion is payable under exactly one model, and all six are computed.
select tenant_id, conversion_id,
       uniqExactIf(model, is_payable = 1) as payable_models,
       uniqExact(model) as models
from {{ ref('fct_attributions') }}
group by tenant_id, conversion_id
having payable_models != 1 or models != 6
