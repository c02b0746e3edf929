"""Helpers shared by the tests (importable as `support.<module>`: tests/conftest.py puts tests/ on sys.path).

- artifacts: the fixture builds (`api_build`, `ApiArtifact`, `copy_artifacts`, API_BUILD, ROOT) and the
  offline job's CLI run in this process (`build_in_process`, `api_build_in_process`) for the fast tests.
- servers: real `python -m app` processes (`start_api_server`, `ApiServer`, `free_port`, `wait_for`, `stop`),
  and what the tests ask a running server (`metrics_text`, `each_worker`, `wait_serving`).
- in_process: the API in this process (create_app + TestClient) behind start_api_server's signature.
- oracle: every score the API serves, recomputed in dense numpy (`dense_oracle`, `paper_factors`).
- prometheus: the one parser of Prometheus text samples (`metric`).
- problems: RFC 9457 problem documents (`PROBLEM`, `assert_problem`).
- load: a bounded load generator (`LoadGenerator`, `neighbour_queries`).
- processes: worker processes, their memory and mappings.
- versions: hand-published versions and SIGKILLed builds.
"""
