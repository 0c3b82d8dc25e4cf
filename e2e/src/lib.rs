//! Whole-pipeline tests live in `tests/`: they start ingest-api, stream-workers and query-api in-process against the
//! real Postgres, Kafka and ClickHouse of the dev stack, and drive them over HTTP. This library is empty on purpose.
