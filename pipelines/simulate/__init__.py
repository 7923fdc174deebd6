"""The ground-truth traffic simulator (`rastro simulate`, docs/simulator.md): a world of
merchants, affiliates and campaigns, journeys of people and bots through it, every order
labelled with the credit the rules of docs/attribution.md give it; and the score of the
warehouse's attribution against that truth."""

from pipelines.simulate.demo import seed_demo_traffic
from pipelines.simulate.journeys import Mix
from pipelines.simulate.run import Options, Summary, ingest_and_build, simulate
from pipelines.simulate.score import Score, compare, format_score, score

__all__ = [
    "Mix",
    "Options",
    "Score",
    "Summary",
    "compare",
    "format_score",
    "ingest_and_build",
    "score",
    "seed_demo_traffic",
    "simulate",
]
