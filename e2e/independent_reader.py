#!/usr/bin/env python3
"""Reads the voucher topic with a reader that is not ours and checks that it decodes every message.

What flows through it: every message on the topic, from the beginning of each partition to the end it has when the
reader starts. The reader is librdkafka (confluent-kafka) plus fastavro, and shares no code with kerp-schemas: it
computes the CRC-64-AVRO fingerprint of the Parsing Canonical Form of every schemas/avro/*.avsc itself, picks the
writer schema by the fingerprint in each message's single-object header (C3 01 + 8 bytes little-endian) and decodes
the datum with fastavro. This is how any Avro consumer without a schema registry reads our events, so a message it
cannot recognise or decode is a broken contract (docs/events.md).

Messages written before the codec followed the spec carry the legacy fingerprints (the documented aliases); they
are decoded with the same schemas and counted apart.

    python3 -m pip install fastavro==1.13.1 confluent-kafka==2.16.1
    VOUCHER_TOPIC=kerp.vouchers.v1 KAFKA_BROKERS=127.0.0.1:9092 python3 e2e/independent_reader.py

VOUCHER_TOPIC (default kerp.vouchers.v1) may start with '^' to read every topic whose name matches that regular
expression, librdkafka's convention; CI uses it for the e2e tests' per-run topics. Exits 1 when there is no message
at all, when any message is not recognised or does not decode, or when no VoucherPosted was decoded by the current
schemas: the vouchers are the events the pipeline exists for, and a topic of master-data events alone (the chart of
accounts every new company publishes) would otherwise pass without the voucher contract ever being read. It never
commits an offset.
"""

import collections
import io
import json
import os
import pathlib
import re
import sys
import time
import uuid

import fastavro
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition
from fastavro.schema import fingerprint, to_parsing_canonical_form

SCHEMA_DIR = pathlib.Path(__file__).resolve().parent.parent / "schemas" / "avro"
MAGIC = b"\xc3\x01"
HEADER_BYTES = 10
TIMEOUT_S = 10.0
# Reading to the end must finish within this; the topics of a test run hold thousands of messages, not millions.
READ_DEADLINE_S = 120.0
ERRORS_SHOWN = 20
# The event that must be among those decoded (the `name` of voucher_posted*.avsc).
REQUIRED_EVENT = "VoucherPosted"

# The fingerprints apache-avro gave our v1 schemas before the codec followed the spec (its canonical form kept logical
# types), as the 8 header bytes. Frozen history: kerp-schemas accepts them as aliases and pins the same values in
# its tests (VOUCHER_POSTED_V1_LEGACY_FINGERPRINT, ACCOUNTS_CHANGED_V1_LEGACY_FINGERPRINT); docs/events.md lists them.
LEGACY = {
    bytes.fromhex("79117b973c7d8348"): "voucher_posted.avsc",
    bytes.fromhex("0c0899d8997b6881"): "accounts_changed.avsc",
}


def schemas():
    """Header fingerprint bytes -> (event name, parsed schema, legacy?), computed from the .avsc files."""
    known = {}
    by_file = {}
    for path in sorted(SCHEMA_DIR.glob("*.avsc")):
        schema = json.loads(path.read_text(encoding="utf-8"))
        # fastavro gives the fingerprint as the hex of its little-endian bytes, which is the header's order.
        header = bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))
        entry = (schema["name"], fastavro.parse_schema(schema))
        by_file[path.name] = entry
        known[header] = (*entry, False)
    if not known:
        sys.exit(f"independent reader: no schemas in {SCHEMA_DIR}")
    for header, file in LEGACY.items():
        if file in by_file:
            known[header] = (*by_file[file], True)
    return known


def topics(consumer, wanted):
    metadata = consumer.list_topics(timeout=TIMEOUT_S)
    if wanted.startswith("^"):
        pattern = re.compile(wanted)
        names = sorted(t for t in metadata.topics if pattern.search(t))
    else:
        names = [wanted] if wanted in metadata.topics and metadata.topics[wanted].error is None else []
    return {name: sorted(metadata.topics[name].partitions) for name in names}


def decode(known, value):
    """(event name, legacy?) of one message, or raises ValueError saying why it is not ours."""
    if value is None or len(value) < HEADER_BYTES or value[:2] != MAGIC:
        raise ValueError("not an Avro single-object message")
    header = value[2:HEADER_BYTES]
    if header not in known:
        raise ValueError(f"unknown fingerprint {header.hex()}")
    name, schema, legacy = known[header]
    datum = io.BytesIO(value[HEADER_BYTES:])
    record = fastavro.schemaless_reader(datum, schema, None)
    if datum.tell() != len(value) - HEADER_BYTES:
        raise ValueError(f"{len(value) - HEADER_BYTES - datum.tell()} bytes left after the {name} datum")
    # fastavro turns a logicalType uuid into uuid.UUID only when the text is one; a plain str means it is not.
    if not isinstance(record.get("event_id"), uuid.UUID):
        raise ValueError(f"{name} without a valid event_id: {record.get('event_id')!r}")
    return name, legacy


def main():
    brokers = os.environ.get("KAFKA_BROKERS", "127.0.0.1:9092")
    wanted = os.environ.get("VOUCHER_TOPIC", "kerp.vouchers.v1")
    known = schemas()
    consumer = Consumer(
        {
            "bootstrap.servers": brokers,
            # Partitions are assigned, not subscribed, so the group is never joined and nothing is committed; librdkafka
            # still wants a group id for a consumer.
            "group.id": f"kerp-independent-reader-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
        }
    )
    try:
        found = topics(consumer, wanted)
        if not found:
            sys.exit(f"independent reader: no topic {wanted} on {brokers}")
        # The end of each partition as it is now; messages produced later are not waited for.
        end = {}
        for topic, partitions in found.items():
            for p in partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=TIMEOUT_S)
                if high > low:
                    end[(topic, p)] = high
        counts = collections.Counter()
        legacy_counts = collections.Counter()
        errors = []
        if end:
            consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for (t, p) in end])
        pending = set(end)
        deadline = time.monotonic() + READ_DEADLINE_S
        while pending:
            if time.monotonic() > deadline:
                sys.exit(f"independent reader: could not read to the end of {sorted(pending)} in {READ_DEADLINE_S:.0f} s")
            msg = consumer.poll(1.0)
            if msg is None:
                # The last offsets may be transaction markers, which are never delivered; the position still passes them.
                for tp in consumer.position([TopicPartition(t, p) for (t, p) in pending]):
                    if tp.offset >= end[(tp.topic, tp.partition)]:
                        pending.discard((tp.topic, tp.partition))
                continue
            if msg.error():
                raise KafkaException(msg.error())
            key = (msg.topic(), msg.partition())
            if key not in pending or msg.offset() >= end[key]:
                continue
            try:
                name, legacy = decode(known, msg.value())
                (legacy_counts if legacy else counts)[name] += 1
            except Exception as e:  # noqa: BLE001 - every failure to decode is reported the same way
                errors.append(f"{msg.topic()}[{msg.partition()}]@{msg.offset()}: {e}")
            if msg.offset() + 1 >= end[key]:
                pending.discard(key)
    finally:
        consumer.close()

    def summary(counter):
        names = sorted(set(counter) | {name for name, _, _ in known.values()}, reverse=True)
        return ", ".join(f"{n}: {counter[n]}" for n in names)

    line = f"independent reader: {sum(counts.values())} messages decoded ({summary(counts)})"
    if legacy_counts:
        line += f", plus {sum(legacy_counts.values())} under legacy fingerprints ({summary(legacy_counts)})"
    print(f"{line} from {len(found)} topic(s) matching {wanted}")
    for error in errors[:ERRORS_SHOWN]:
        print(f"independent reader: not decodable: {error}", file=sys.stderr)
    if errors:
        sys.exit(f"independent reader: {len(errors)} of {len(errors) + sum(counts.values()) + sum(legacy_counts.values())} messages not decodable")
    if not counts and not legacy_counts:
        sys.exit(f"independent reader: {wanted} holds no message")
    # Legacy fingerprints do not count: they show that the old contract is still readable, not the one written today.
    if counts[REQUIRED_EVENT] == 0:
        sys.exit(f"independent reader: no {REQUIRED_EVENT} decoded by the current schemas in {wanted}")


if __name__ == "__main__":
    main()
