#!/usr/bin/env python3
"""Writes the seed corpus for the `algorithm_ops` fuzz target (fuzz/corpus/algorithm_ops/).

Input layout (see fuzz/harness/algorithms.rs): kind, limit (u16 LE, taken % 500 + 1), period
index (% 6), burst byte, then (tag, value) pairs: tag % 8 in 0..=2 is a small advance, 3 a
long idle of (value % 5) periods, 7 with value 0 a reset, anything else a check of cost
value % (capacity + 2). Deterministic: rerunning rewrites the same files.
"""
import os
import random

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fuzz", "corpus", "algorithm_ops")

def small(v): return bytes([0, v])
def idle(n): return bytes([3, n])
def check(c): return bytes([4, c])
def reset(): return bytes([7, 0])
def stale(periods, c): return bytes([4 | (periods << 3), c])

def header(kind, limit, period, burst):
    l = (limit - 1) % 500
    return bytes([kind, l & 0xFF, l >> 8, period, burst])

SEEDS = {
    # Hand-written: drain a burst, get denied, wait, recover; one per algorithm.
    "gcra-drain-refill": header(0, 10, 4, 9) + check(1) * 10 + check(1) + small(7) + check(1),
    "leaky-capacity-1": header(1, 4, 4, 0) + check(1) + check(1) + small(16) + check(1),
    "token-bucket-big-cost": header(2, 100, 4, 149) + check(120) + check(40) + idle(1) + check(100),
    "fixed-window-boundary": header(3, 5, 4, 0) + small(60) + check(5) + small(4) + check(5) + check(1),
    "sliding-window-weighted": header(4, 8, 4, 0) + check(8) + idle(1) + check(1) + small(32) + check(4),
    "gcra-reset": header(0, 3, 4, 2) + check(3) + check(1) + reset() + check(3),
    "fixed-window-reset": header(3, 2, 2, 0) + check(2) + reset() + check(2) + check(1),
    # Edge rates: one per nanosecond (period index 0), prime periods, a minute.
    "gcra-one-per-ns": header(0, 1, 0, 0) + check(1) * 3 + small(1) + check(1),
    "token-one-per-ns": header(2, 7, 0, 13) + check(8) + small(2) + check(8),
    "sliding-prime-period": header(4, 499, 2, 0) + check(200) + small(200) + check(250) + idle(1) + check(100),
    "fixed-minute": header(3, 60, 5, 0) + check(61) + check(60) + small(63) + check(1) + idle(2) + check(60),
    "leaky-large-burst": header(1, 500, 3, 255) + check(255) + check(1) + small(1) + check(2),
    "costs-over-capacity": header(0, 2, 4, 1) + check(3) + check(4) + check(0) + check(1),
    "peeks-only": header(2, 9, 4, 8) + check(0) * 4 + small(9) + check(0),
    # Stale readings (lagged run only): a check two or more windows behind the stored one.
    "fixed-stale-two-windows": header(3, 10, 4, 0) + idle(4) + small(32) + check(1) * 10 + stale(2, 1) + small(2) + check(1) * 10,
    "sliding-stale-two-windows": header(4, 10, 4, 0) + idle(4) + small(32) + check(1) * 10 + stale(2, 1) + small(2) + check(1) * 10,
    "gcra-stale-far": header(0, 5, 4, 4) + idle(4) + idle(4) + check(5) + stale(31, 3) + check(1) + small(64) + stale(7, 2),
    "token-stale-far": header(2, 7, 3, 6) + idle(3) + check(7) + stale(20, 4) + small(100) + check(3) + stale(1, 1),
}

def random_seed(rng, kind):
    data = header(kind, rng.randint(1, 500), rng.randint(0, 5), rng.randint(0, 255))
    for _ in range(rng.randint(8, 24)):
        data += bytes([rng.randint(0, 7), rng.randint(0, 255)])
    return data

def random_stale_seed(rng, kind):
    data = header(kind, rng.randint(1, 500), rng.randint(0, 5), rng.randint(0, 255))
    for _ in range(rng.randint(8, 32)):
        data += bytes([rng.randint(0, 255), rng.randint(0, 255)])
    return data

def main():
    os.makedirs(OUT, exist_ok=True)
    rng = random.Random(20240601)
    seeds = dict(SEEDS)
    for i in range(8):
        seeds[f"random-{i:02}"] = random_seed(rng, i % 5)
    for i in range(10):
        seeds[f"random-stale-{i:02}"] = random_stale_seed(rng, i % 5)
    for name, data in seeds.items():
        with open(os.path.join(OUT, f"seed-{name}"), "wb") as f:
            f.write(data)
    print(f"wrote {len(seeds)} seeds to {os.path.normpath(OUT)}")

if __name__ == "__main__":
    main()
