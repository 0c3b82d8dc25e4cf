#!/usr/bin/env python3
"""Moves a consumer group's committed offsets back by N per partition, for the fault suite's redelivery scenario.

In: the group's committed offsets on one topic. Out: the same offsets minus N (never below the partition's first
offset), committed for the group. Kafka takes a commit from a client outside the group only while the group has no
active member, so stop every worker first; a member that was killed lingers until its session times out, which is why
the commit is retried for a while.
"""
import argparse
import sys
import time

from confluent_kafka import Consumer, KafkaException, TopicPartition

# How long to keep retrying the commit while a dead member's session expires, in seconds.
COMMIT_RETRY_SECONDS_MAX = 60


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--brokers", required=True)
    p.add_argument("--group", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--back", type=int, required=True, help="offsets to move back per partition")
    a = p.parse_args()
    c = Consumer({"bootstrap.servers": a.brokers, "group.id": a.group, "enable.auto.commit": False})
    parts = sorted(c.list_topics(a.topic, timeout=10).topics[a.topic].partitions)
    committed = c.committed([TopicPartition(a.topic, n) for n in parts], timeout=10)
    moved, total = [], 0
    for tp in committed:
        low, high = c.get_watermark_offsets(TopicPartition(a.topic, tp.partition), timeout=10)
        # A partition the group never committed on is read from wherever the worker's reset policy says; leave it.
        if tp.offset < 0:
            continue
        new = max(low, tp.offset - a.back)
        total += tp.offset - new
        print(f"partition {tp.partition}: committed {tp.offset} -> {new} (log end {high})")
        moved.append(TopicPartition(a.topic, tp.partition, new))
    deadline = time.time() + COMMIT_RETRY_SECONDS_MAX
    while True:
        try:
            c.commit(offsets=moved, asynchronous=False)
            break
        except KafkaException as e:
            if time.time() > deadline:
                print(f"commit failed: {e}", file=sys.stderr)
                return 1
            time.sleep(2)
    c.close()
    print(f"moved group {a.group} back by {total} messages on {a.topic}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
