"""What every test suite and the benchmarks share: the clusters and connections (pg), the
stand-in OpenAI-compatible server (fake_llm), and Python tiktoken without network
(tiktoken_offline). Importable as `support` (pytest.ini and bench/run.sh put tests/ on the path)."""
