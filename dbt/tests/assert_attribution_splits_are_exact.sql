-- Under every model, a credited conversion's shares sum to 1 and its credited amounts sum
-- to the order's amount and net, to the cent.
select
    conversion_id,
    model,
    sum(share) as total_share,
    sum(credited_amount_minor) as credited_amount,
    any(order_amount_minor) as amount,
    sum(credited_net_minor) as credited_net,
    any(order_net_minor) as net
from {{ ref('fct_attributions') }}
group by conversion_id, model
having abs(total_share - 1) > 1e-9 or credited_amount != amount or credited_net != net
