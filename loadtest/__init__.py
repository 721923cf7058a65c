"""The holiday-surge load test: Locust drives real gRPC traffic at a `surge serve` process,
then an independent audit of PostgreSQL and Redis proves nothing was over-redeemed or lost.

Modules: `profiles` (the sale's shape and data, per profile), `seed` (creates the sale through
the API), `outcomes` (how a call's result is named and counted), `locustfile` (the users and
the LoadTestShape), `summary` (figures from Locust's CSV), `run` (the orchestrator behind
`make loadtest`).
"""
