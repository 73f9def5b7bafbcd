"""Side-by-side benchmark of clustermember, HashiCorp Serf and swim-protocol.

python -m bench.compare run --nodes 5 20 50 --repeats 3 --out results.json
python -m bench.compare report results.json
"""
