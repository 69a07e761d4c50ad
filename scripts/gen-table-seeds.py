#!/usr/bin/env python3
"""Writes the deterministic seed inputs of the table_ops fuzz target (see fuzz/harness/table.rs):
12 roomy tables (compared against reference models) and 12 tiny ones (overflow and reclaim)."""
import os
import random

random.seed(20261123)
d = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fuzz", "corpus", "table_ops")
os.makedirs(d, exist_ok=True)
for i in range(24):
    head = [i % 5, random.randrange(256), random.randrange(4), random.randrange(256),
            random.randrange(4), random.randrange(3)]
    head[3] = (head[3] // 2) * 2 + (0 if i < 12 else 1)
    ops = []
    for _ in range(random.randrange(40, 200)):
        tag = random.choice([0, 1, 2, 3, 4, 5, 6, 7, 2, 3, 4, 5]) | (random.randrange(32) << 3)
        ops += [tag, random.randrange(256)]
    with open(os.path.join(d, "seed-%02d" % i), "wb") as f:
        f.write(bytes(head + ops))
