{#- Fails for every combination of `columns` that occurs more than once: the primary key
    test of models whose key spans several columns. -#}
{% test unique_combination(model, columns) %}
select {{ columns | join(', ') }}, count() as occurrences
from {{ model }}
group by {{ columns | join(', ') }}
having occurrences > 1
{% endtest %}
