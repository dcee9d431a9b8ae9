"""The container images dagkeeper runs against, in one place.

docker-compose.yml uses exactly these images (tests/unit/test_compose.py checks it) and the
testcontainers fixture back end starts the same ones.
"""

PG_IMAGE = "postgres:15"
ZK_IMAGE = "zookeeper:3.8"
